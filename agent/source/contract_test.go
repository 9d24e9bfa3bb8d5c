package source

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf/btf"
)

// TestContract checks the committed BPF object against the Go side: the
// struct layouts bpf2go mirrored, the hand-written decoder, and the enum
// values the Go constants repeat. It needs neither root nor clang.
func TestContract(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatalf("load collection spec: %v", err)
	}

	for _, tc := range []struct {
		cName  string
		goType reflect.Type
	}{
		{"pw_event", reflect.TypeOf(bpfPwEvent{})},
		{"pw_request", reflect.TypeOf(bpfPwRequest{})},
		{"pw_pause_state", reflect.TypeOf(bpfPwPauseState{})},
		{"pw_mapping_state", reflect.TypeOf(bpfPwMappingState{})},
		{"pw_usdt_spec", reflect.TypeOf(bpfPwUsdtSpec{})},
	} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(tc.cName, &st); err != nil {
			t.Fatalf("%s not in BTF: %v", tc.cName, err)
		}
		if int(st.Size) != int(tc.goType.Size()) {
			t.Errorf("%s: C size %d, Go size %d", tc.cName, st.Size, tc.goType.Size())
		}
		// Go fields in order, skipping structs.HostLayout.
		var fields []reflect.StructField
		for i := range tc.goType.NumField() {
			if f := tc.goType.Field(i); f.Name != "_" {
				fields = append(fields, f)
			}
		}
		if len(fields) != len(st.Members) {
			t.Fatalf("%s: %d C members, %d Go fields", tc.cName, len(st.Members), len(fields))
		}
		for i, m := range st.Members {
			f := fields[i]
			if uint32(m.Offset.Bytes()) != uint32(f.Offset) {
				t.Errorf("%s.%s: C offset %d, Go %s offset %d", tc.cName, m.Name, m.Offset.Bytes(), f.Name, f.Offset)
			}
			if !strings.EqualFold(strings.ReplaceAll(m.Name, "_", ""), f.Name) {
				t.Errorf("%s member %d: C %q, Go %q", tc.cName, i, m.Name, f.Name)
			}
		}
	}
	if got := reflect.TypeOf(bpfPwEvent{}).Size(); got != eventSize {
		t.Errorf("eventSize = %d, struct is %d bytes", eventSize, got)
	}
	if got := reflect.TypeOf(bpfPwRequest{}).Size(); got != requestSize {
		t.Errorf("requestSize = %d, struct is %d bytes", requestSize, got)
	}
	// Every record starts with its type.
	for _, name := range []string{"pw_event", "pw_request"} {
		var st *btf.Struct
		if err := spec.Types.TypeByName(name, &st); err == nil && (st.Members[0].Name != "type" || st.Members[0].Offset != 0) {
			t.Errorf("%s does not start with its type", name)
		}
	}

	for _, tc := range []struct {
		enum   string
		values map[string]uint64
	}{
		{"pw_event_type", map[string]uint64{"PW_EVENT_PAUSE": eventPause, "PW_EVENT_EXEC": eventExec, "PW_EVENT_EXIT": eventExit, "PW_EVENT_REQUEST": eventRequest, "PW_EVENT_FORK": eventFork, "PW_EVENT_MAPPED": eventMapped}},
		{"pw_event_flag", map[string]uint64{"PW_EVENT_F_AUX": eventFlagAux, "PW_EVENT_F_READ_START": eventFlagReadStart, "PW_EVENT_F_CPU": eventFlagCPU}},
		{"pw_usdt_arg_kind", map[string]uint64{"PW_USDT_ARG_CONST": usdtArgConst, "PW_USDT_ARG_REG": usdtArgReg, "PW_USDT_ARG_REG_MEM": usdtArgRegMem}},
		{"pw_stat", map[string]uint64{"PW_STAT_RINGBUF_LOST": statRingbufLost, "PW_STAT_UNPAIRED_END": statUnpairedEnd, "PW_STAT_CONN_LOST": statConnLost, "PW_STAT_UNCOVERED_ACCEPT": statUncoveredAccept, "PW_STAT_MAPPING_LIMITED": statMappingLimited, "PW_STAT_REQ_UNCOUNTED": statReqUncounted, "PW_STAT_PAUSE_RATE": statPauseRate, "PW_STAT_MAX": statMax}},
	} {
		var e *btf.Enum
		if err := spec.Types.TypeByName(tc.enum, &e); err != nil {
			t.Errorf("enum %s not in BTF: %v", tc.enum, err)
			continue
		}
		for _, v := range e.Values {
			want, ok := tc.values[v.Name]
			if !ok {
				t.Errorf("%s: C value %s has no Go constant", tc.enum, v.Name)
			} else if v.Value != want {
				t.Errorf("%s.%s: C %d, Go %d", tc.enum, v.Name, v.Value, want)
			}
		}
	}
}

// TestDecodeRecords: the hand-written decoders read back what the kernel's
// layout (the bpf2go mirrors, checked against BTF above) holds.
// TestRuntimeIDs: every runtime's Go ID is the PW_RUNTIME_<NAME> its BPF
// file defines, and no two runtimes share one.
func TestRuntimeIDs(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatalf("load collection spec: %v", err)
	}
	seen := map[uint8]string{}
	for _, r := range runtimeList(Config{}) {
		var e *btf.Enum
		name := "pw_runtime_" + r.Name()
		if err := spec.Types.TypeByName(name, &e); err != nil {
			t.Errorf("%s: enum %s not in BTF (bpf/%s's file must define it): %v", r.Name(), name, r.Name(), err)
			continue
		}
		if len(e.Values) != 1 || e.Values[0].Name != "PW_RUNTIME_"+strings.ToUpper(r.Name()) || e.Values[0].Value != uint64(r.ID()) {
			t.Errorf("%s: BTF %s = %+v, Go ID %d", r.Name(), name, e.Values, r.ID())
		}
		if other, dup := seen[r.ID()]; dup || r.ID() == 0 {
			t.Errorf("%s: ID %d is 0 or also %s's", r.Name(), r.ID(), other)
		}
		seen[r.ID()] = r.Name()
	}
}

func TestDecodeRecords(t *testing.T) {
	pause := bpfPwEvent{Type: eventPause, Runtime: runtimeJVM, Flags: eventFlagAux | eventFlagCPU, Pid: 4242, Tid: 4243, Reason: 2,
		StartNs: 1000, DurationNs: 25_000, StoppingNs: 700, Aux: 9, CpuNs: 21_000}
	for i, c := range "G1CollectForAllocation" {
		pause.Detail[i] = int8(c)
	}
	req := bpfPwRequest{Type: eventRequest, Flags: eventFlagReadStart, Port: 8080, Pid: 77, Fd: 5,
		StartNs: 3000, DurationNs: 40_000, PausedNs: 1200, CpuWaitNs: 900}
	for _, tc := range []struct {
		name string
		in   any
		want record
	}{
		{"pause", pause, record{typ: eventPause, pid: 4242, e: pause}},
		{"request", req, record{typ: eventRequest, pid: 77, req: req}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := binary.Write(&buf, binary.LittleEndian, tc.in); err != nil {
				t.Fatal(err)
			}
			got, err := decodeRecord(buf.Bytes(), time.Time{})
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("decode = %+v, want %+v", got, tc.want)
			}
			if _, err := decodeRecord(buf.Bytes()[:buf.Len()-1], time.Time{}); err == nil {
				t.Error("short record decoded without error")
			}
		})
	}
	if s := cString(pause.Detail[:]); s != "G1CollectForAllocation" {
		t.Errorf("detail %q", s)
	}
}
