// Command example is a small HTTP service that allocates on every request
// and in the background, so the Go collector pauses several times a second:
// run it next to pausewatch to see real pauses within seconds.
package main

import (
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime/debug"
	"sync"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	churn := flag.Int("churn-mb", 8, "MiB allocated per background tick (every 10 ms), 0 to disable")
	pauseEvery := flag.Duration("pause-every", 0, "stop the world on purpose this often (0: never), to see what long pauses cost")
	ballastMB := flag.Int("ballast-mb", 64, "live heap of small objects that makes each deliberate pause long (with -pause-every)")
	flag.Parse()

	if *pauseEvery > 0 {
		go deliberatePauses(*pauseEvery, *ballastMB)
	}

	var mu sync.Mutex
	keep := make([][]byte, 64)
	go func() {
		for range time.Tick(10 * time.Millisecond) {
			for i := 0; i < *churn*16; i++ {
				b := make([]byte, 64<<10)
				mu.Lock()
				keep[rand.IntN(len(keep))] = b
				mu.Unlock()
			}
		}
	}()

	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// A request-sized garbage tree: a thousand small objects.
		nodes := make([]*[128]byte, 1000)
		for i := range nodes {
			nodes[i] = new([128]byte)
		}
		fmt.Fprintf(w, "ok %d\n", len(nodes))
	})
	log.Printf("example service on http://%s/", *addr)
	log.Fatal(http.ListenAndServe(*addr, nil))
}

// ballast holds many small live objects: debug.WriteHeapDump stops the
// world for as long as it takes to write them all out.
var ballast []*[64]byte

// deliberatePauses stops the world every interval by writing a heap dump
// to /dev/null: one long STW pause (reason "write heap dump").
func deliberatePauses(every time.Duration, ballastMB int) {
	ballast = make([]*[64]byte, ballastMB<<20/64)
	for i := range ballast {
		ballast[i] = new([64]byte)
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		log.Fatalf("open %s: %v", os.DevNull, err)
	}
	for range time.Tick(every) {
		start := time.Now()
		debug.WriteHeapDump(null.Fd())
		log.Printf("deliberate pause: %v", time.Since(start))
	}
}
