// The Node e2e tests' workload: says ready, waits for "go" on stdin (so the
// agent is attached first), allocates for CHURN_SECONDS, and prints what its
// own PerformanceObserver saw of the collections that started in that
// window (and the wait for their entries), as one JSON line, then exits,
// so that nothing collects after.
'use strict';
const { PerformanceObserver, performance, constants } = require('node:perf_hooks');

const secs = Number(process.env.CHURN_SECONDS || 3);
const acc = { minor: 0, major: 0, incremental: 0, weakcb: 0, seconds: 0 };
let from = Infinity;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    if (e.startTime < from) continue;
    const kind = e.detail ? e.detail.kind : e.kind;
    switch (kind) {
      case constants.NODE_PERFORMANCE_GC_MINOR: acc.minor++; acc.seconds += e.duration / 1e3; break;
      case constants.NODE_PERFORMANCE_GC_MAJOR: acc.major++; acc.seconds += e.duration / 1e3; break;
      case constants.NODE_PERFORMANCE_GC_INCREMENTAL: acc.incremental++; break;
      case constants.NODE_PERFORMANCE_GC_WEAKCB: acc.weakcb++; break;
    }
  }
}).observe({ entryTypes: ['gc'] });

console.log('ready', process.pid);
process.stdin.once('data', () => {
  from = performance.now();
  const keep = [];
  const deadline = Date.now() + secs * 1000;
  const step = () => {
    for (let n = 0; n < 20; n++) {
      const batch = [];
      for (let i = 0; i < 2000; i++) batch.push({ i, s: 'x' + i });
      keep.push(batch);
      if (keep.length > 600) keep.splice(0, 300);
    }
    if (Date.now() < deadline) return setImmediate(step);
    // Entries are delivered after the collection: wait for the last ones.
    setTimeout(() => {
      process.stdout.write(JSON.stringify(acc) + '\n', () => process.exit(0));
    }, 300);
  };
  step();
});
