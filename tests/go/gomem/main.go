// gomem: a Go program for memwatch's tests. "sleep" holds a little memory until stdin
// closes; "hog" allocates and touches memory until it is killed.
package main

import (
	"bufio"
	"fmt"
	"os"
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
	default:
		fmt.Fprintln(os.Stderr, "usage: gomem sleep|hog")
		os.Exit(2)
	}
}
