package otlp

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/pausewatch/pausewatch/agent"
)

// reqSeries is one data point of pausewatch.request.duration: the
// kernel's histograms of its attribute set, summed since start.
type reqSeries struct {
	attrs attribute.Set
	start time.Time
	hist  agent.RequestHist
}

// addRequests adds the kernel's counts of one process's port (one half:
// paused or not) to its data point.
func (x *Exporter) addRequests(attrs []attribute.KeyValue, h *agent.RequestHist) {
	if h.Count() == 0 {
		return
	}
	set := attribute.NewSet(attrs...)
	x.mu.Lock()
	defer x.mu.Unlock()
	s := x.reqs[set.Equivalent()]
	if s == nil {
		s = &reqSeries{attrs: set, start: time.Now()}
		x.reqs[set.Equivalent()] = s
	}
	s.hist.Add(h)
}

// reqProducer hands the request histograms to the metric reader at each
// collection: already bucketed in the kernel, they cannot pass through an
// SDK instrument, which takes one value at a time.
type reqProducer struct{ x *Exporter }

// Produce implements sdkmetric.Producer: an exponential histogram of
// scale agent.NativeSchema (or explicit buckets with ExplicitBuckets),
// exact in either form (agent.RequestBounds).
func (p reqProducer) Produce(ctx context.Context) ([]metricdata.ScopeMetrics, error) {
	x := p.x
	// Before the lock: the flush waits for Record, which takes it. When
	// it fails (ctx ended) the histograms are read as they are.
	if x.opts.Flush != nil {
		_ = x.opts.Flush(ctx)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if len(x.reqs) == 0 {
		return nil, nil
	}
	now := time.Now()
	m := metricdata.Metrics{
		Name:        "pausewatch.request.duration",
		Description: "Requests served, from their first bytes reaching the socket to the last response write.",
		Unit:        "s",
	}
	if len(x.opts.ExplicitBuckets) > 0 {
		var pts []metricdata.HistogramDataPoint[float64]
		for _, s := range x.reqs {
			cum := make([]uint64, len(agent.ClassicBuckets))
			n := s.hist.Classic(cum)
			counts := make([]uint64, len(cum)+1)
			var below uint64
			for i, c := range cum {
				counts[i] = c - below
				below = c
			}
			counts[len(cum)] = n - below
			pts = append(pts, metricdata.HistogramDataPoint[float64]{
				Attributes: s.attrs, StartTime: s.start, Time: now, Count: n, Sum: s.hist.Sum.Seconds(),
				Bounds: agent.ClassicBuckets, BucketCounts: counts,
				Min: metricdata.NewExtrema(s.hist.Min.Seconds()), Max: metricdata.NewExtrema(s.hist.Max.Seconds()),
			})
		}
		m.Data = metricdata.Histogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: pts}
	} else {
		var pts []metricdata.ExponentialHistogramDataPoint[float64]
		for _, s := range x.reqs {
			pt := metricdata.ExponentialHistogramDataPoint[float64]{
				Attributes: s.attrs, StartTime: s.start, Time: now, Count: s.hist.Count(), Sum: s.hist.Sum.Seconds(),
				Scale: agent.NativeSchema, ZeroThreshold: agent.RequestZeroThreshold,
				Min: metricdata.NewExtrema(s.hist.Min.Seconds()), Max: metricdata.NewExtrema(s.hist.Max.Seconds()),
			}
			// OTLP's bucket j is (base^j, base^(j+1)]: Prometheus's j+1.
			s.hist.Native(func(idx int, c uint64, zero bool) {
				if zero {
					pt.ZeroCount = c
					return
				}
				j := int32(idx - 1)
				if len(pt.PositiveBucket.Counts) == 0 {
					pt.PositiveBucket.Offset = j
				}
				for int32(len(pt.PositiveBucket.Counts)) < j-pt.PositiveBucket.Offset {
					pt.PositiveBucket.Counts = append(pt.PositiveBucket.Counts, 0)
				}
				pt.PositiveBucket.Counts = append(pt.PositiveBucket.Counts, c)
			})
			pts = append(pts, pt)
		}
		m.Data = metricdata.ExponentialHistogram[float64]{Temporality: metricdata.CumulativeTemporality, DataPoints: pts}
	}
	return []metricdata.ScopeMetrics{{
		Scope:   instrumentation.Scope{Name: "github.com/pausewatch/pausewatch"},
		Metrics: []metricdata.Metrics{m},
	}}, nil
}
