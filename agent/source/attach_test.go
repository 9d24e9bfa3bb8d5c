package source

import (
	"os"
	"sync/atomic"
	"testing"
	"time"
)

// blockingPlan is a plan whose Attach waits until released, like a slow
// attach of a large file on a busy node.
type blockingPlan struct {
	entered chan struct{}
	release chan struct{}
	calls   atomic.Int32
}

func (p *blockingPlan) Method() string               { return MethodUprobe }
func (p *blockingPlan) Version() string              { return "" }
func (p *blockingPlan) Decode(bpfPwEvent) pauseFacts { return pauseFacts{} }
func (p *blockingPlan) Attach(*probeSet, *bpfObjects) error {
	if p.calls.Add(1) == 1 {
		close(p.entered)
	}
	<-p.release
	return nil
}

// TestStatusDoesNotWaitForAttach: while a file's probes are being placed,
// Status and Resources (every scrape) answer, and a second process of the
// same file waits for that one attach instead of attaching again.
func TestStatusDoesNotWaitForAttach(t *testing.T) {
	s := New(Config{})
	s.k = &kernel{uprobes: uprobeMulti}
	plan := &blockingPlan{entered: make(chan struct{}), release: make(chan struct{})}
	info := &fileInfo{ready: make(chan struct{}), rt: goRuntime{}, plan: plan, method: MethodUprobe, refs: 2}
	close(info.ready)
	self, err := os.Open("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	defer self.Close()
	done := make(chan error, 2)
	for range 2 {
		go func() {
			_, _, err := s.attachFile(info, self)
			done <- err
		}()
	}
	<-plan.entered

	answered := make(chan struct{})
	go func() {
		s.Status()
		s.Resources()
		close(answered)
	}()
	select {
	case <-answered:
	case <-time.After(2 * time.Second):
		t.Fatal("Status waited for an attach in progress")
	}

	close(plan.release)
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if n := plan.calls.Load(); n != 1 {
		t.Errorf("Attach called %d times for one file, want 1", n)
	}
	if !info.attached {
		t.Error("file not marked attached")
	}
}
