// Command shapes serves the response shapes the request state machine
// must delimit right (issue 16): a response written in steps around a
// pause in the handler, and an upload sent after a 100 Continue.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address")
	work := flag.Duration("work", 100*time.Millisecond, "handler work between the steps of /steps")
	uploadWork := flag.Duration("upload-work", 50*time.Millisecond, "handler work after an upload is read")
	flag.Parse()
	mux := http.NewServeMux()
	// The head is written and flushed, the handler works, then writes the
	// rest: net/http's background read is parked on the connection by then.
	mux.HandleFunc("/steps", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "head\n")
		w.(http.Flusher).Flush()
		time.Sleep(*work)
		io.WriteString(w, "rest\n")
	})
	// With Expect: 100-continue, net/http answers 100 Continue when the
	// handler first reads the body.
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		time.Sleep(*uploadWork)
		fmt.Fprintf(w, "%d\n", n)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// The address on stdout says it serves: no probe request is needed,
	// so every request the agent sees is one the test made.
	fmt.Println(ln.Addr())
	http.Serve(ln, mux)
}
