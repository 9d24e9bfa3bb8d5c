package usdt

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRead: whatever the bytes, Read returns probes or an error, never panics.
func FuzzRead(f *testing.F) {
	good, err := os.ReadFile(filepath.Join("testdata", "sdt.elf"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		Read(bytes.NewReader(data))
	})
}

func FuzzParseArgs(f *testing.F) {
	for _, s := range []string{"-4@%edi 8@-16(%rbp) 8@$5", "-4@112(%rsp)", "8@(%rax)", "1@%dil"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ParseArgs(s)
	})
}
