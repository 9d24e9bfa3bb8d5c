package source

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"

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
		{"pw_pause_state", reflect.TypeOf(bpfPwPauseState{})},
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

	for _, tc := range []struct {
		enum   string
		values map[string]uint64
	}{
		{"pw_event_type", map[string]uint64{"PW_EVENT_PAUSE": eventPause, "PW_EVENT_EXEC": eventExec, "PW_EVENT_EXIT": eventExit, "PW_EVENT_REQUEST": eventRequest, "PW_EVENT_FORK": eventFork}},
		{"pw_runtime", map[string]uint64{"PW_RUNTIME_GO": runtimeGo, "PW_RUNTIME_JVM": runtimeJVM, "PW_RUNTIME_PYTHON": runtimePython}},
		{"pw_event_flag", map[string]uint64{"PW_EVENT_F_AUX": eventFlagAux, "PW_EVENT_F_READ_START": eventFlagReadStart}},
		{"pw_usdt_arg_kind", map[string]uint64{"PW_USDT_ARG_CONST": usdtArgConst, "PW_USDT_ARG_REG": usdtArgReg, "PW_USDT_ARG_REG_MEM": usdtArgRegMem}},
		{"pw_stat", map[string]uint64{"PW_STAT_RINGBUF_LOST": statRingbufLost, "PW_STAT_UNPAIRED_END": statUnpairedEnd, "PW_STAT_CONN_LOST": statConnLost, "PW_STAT_MAX": statMax}},
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

func TestDecodeEvent(t *testing.T) {
	b := make([]byte, eventSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], 1000)
	le.PutUint64(b[8:], 25_000)
	le.PutUint64(b[16:], 700)
	le.PutUint64(b[24:], 9)
	le.PutUint32(b[32:], 4242)
	le.PutUint32(b[36:], 4243)
	le.PutUint32(b[40:], 2)
	b[44], b[45] = eventPause, runtimeGo
	copy(b[48:], "G1CollectForAllocation\x00")

	got, err := decodeEvent(b)
	if err != nil {
		t.Fatal(err)
	}
	want := bpfPwEvent{StartNs: 1000, DurationNs: 25_000, StoppingNs: 700, Aux: 9, Pid: 4242, Tid: 4243,
		Reason: 2, Type: eventPause, Runtime: runtimeGo}
	for i, c := range "G1CollectForAllocation" {
		want.Detail[i] = int8(c)
	}
	if got != want {
		t.Errorf("decode = %+v, want %+v", got, want)
	}
	if s := cString(got.Detail[:]); s != "G1CollectForAllocation" {
		t.Errorf("detail %q", s)
	}
	if _, err := decodeEvent(b[:eventSize-1]); err == nil {
		t.Error("short record decoded without error")
	}
}
