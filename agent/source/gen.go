package source

// The BPF objects are generated with a pinned clang (Debian's clang-14) and
// committed, so `go build` needs no clang; `make check-generated` rebuilds
// them and fails on any difference. -mcpu=v3 for the atomic compare-and-swap
// of the request state machine (kernels >= 5.12).
//go:generate go tool bpf2go -cc clang-14 -strip llvm-strip-14 -cflags "-O2 -g -Wall -Werror -Wpadded -mcpu=v3" -target amd64 -type pw_event -type pw_request -type pw_pause_state -type pw_usdt_spec -type pw_req_key -type pw_req_hist -type pw_req_objective_key bpf ../../bpf/pausewatch.c -- -I../../bpf
