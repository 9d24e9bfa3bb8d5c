package agent

import (
	"context"
	"errors"
	"fmt"
)

// A Source observes processes on this node and sends one Event per pause
// (and one per exit of a process it reported) to out until ctx is done.
// Nothing it attached stays in the kernel after Run returns.
type Source interface {
	Run(ctx context.Context, out chan<- Event) error
}

// An Exporter publishes Events. Record is called from one goroutine and
// must not block: exporters aggregate, they do not queue.
type Exporter interface {
	Record(Event)
}

// Run starts the source and hands each Event to every exporter until ctx is
// done or the source fails.
func Run(ctx context.Context, src Source, exporters ...Exporter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan Event, 1024)
	errc := make(chan error, 1)
	go func() {
		errc <- src.Run(ctx, events)
		close(events)
	}()
	reasons := reasonCap{}
	for e := range events {
		if e.Type == Sync {
			if e.Synced != nil {
				close(e.Synced)
			}
			continue
		}
		e = reasons.apply(e)
		for _, x := range exporters {
			x.Record(e)
		}
	}
	err := <-errc
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("source: %w", err)
	}
	return nil
}
