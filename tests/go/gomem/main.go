// gomem: a Go program for memwatch's tests. "sleep" holds a little memory until stdin
// closes; "hog" allocates and touches memory until it is killed; "churn" keeps LIVE MiB
// live and allocates 4 MiB buffers for SECONDS seconds (the heap between collections
// reaches about twice the live data), then prints "survived"; "serve" answers HTTP on
// 127.0.0.1:0 (it prints its address) until stdin closes; "export [ROWS]" keeps building JSON
// responses (4 MiB for the default 40,000 rows) in handleExport, keeping each, printing the bytes kept after each, until killed.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

var keep [][]byte

func main() {
	mode := "sleep"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "sleep":
		keep = append(keep, make([]byte, 4<<20))
		fmt.Println("ready")
		bufio.NewReader(os.Stdin).ReadString(0)
	case "hog":
		fmt.Println("ready")
		for {
			b := make([]byte, 1<<20)
			for i := 0; i < len(b); i += 4096 {
				b[i] = 1
			}
			keep = append(keep, b)
			time.Sleep(time.Millisecond)
		}
	case "churn":
		live, _ := strconv.Atoi(arg(2, "36"))
		secs, _ := strconv.Atoi(arg(3, "5"))
		for i := 0; i < live; i++ {
			keep = append(keep, touch(make([]byte, 1<<20)))
		}
		fmt.Println("ready")
		var sink []byte
		for end := time.Now().Add(time.Duration(secs) * time.Second); time.Now().Before(end); {
			sink = touch(make([]byte, 4<<20))
			time.Sleep(2 * time.Millisecond)
		}
		_ = sink
		fmt.Println("survived")
	case "export":
		rows, _ := strconv.Atoi(arg(2, "40000"))
		fmt.Println("ready")
		kept := 0
		for {
			out := handleExport(rows)
			keep = append(keep, out)
			kept += len(out)
			fmt.Println("kept", kept)
			time.Sleep(100 * time.Millisecond)
		}
	case "serve":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		go http.Serve(ln, nil)
		fmt.Println(ln.Addr())
		bufio.NewReader(os.Stdin).ReadString(0)
	default:
		fmt.Fprintln(os.Stderr, "usage: gomem sleep|hog|churn [LIVE_MIB SECONDS]|serve|export [ROWS]")
		os.Exit(2)
	}
}

type row struct {
	ID    int    `json:"id"`
	Name  string `json:"name"`
	Email string `json:"email"`
	Note  string `json:"note"`
}

// handleExport builds one large response, as the handler of an export endpoint would.
//
//go:noinline
func handleExport(rows int) []byte {
	r := make([]row, rows)
	for i := range r {
		r[i] = row{ID: i, Name: fmt.Sprintf("user-%d", i), Email: fmt.Sprintf("user-%d@example.com", i), Note: "a note of some length to pad the row"}
	}
	out, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	return out
}

func arg(i int, def string) string {
	if len(os.Args) > i {
		return os.Args[i]
	}
	return def
}

// touch writes every page, so the buffer is resident (fresh memory from the OS is not).
func touch(b []byte) []byte {
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return b
}
