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
	"sync"
	"time"
)

func main() {
	addr := flag.String("listen", "127.0.0.1:8080", "address to serve on")
	churn := flag.Int("churn-mb", 8, "MiB allocated per background tick (every 10 ms), 0 to disable")
	flag.Parse()

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
