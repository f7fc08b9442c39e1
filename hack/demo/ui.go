package main

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
)

// ui serialises the demo's output: its own numbered steps and the lines of
// the processes it runs arrive from several goroutines.
type ui struct {
	mu sync.Mutex
	w  io.Writer
	n  int // steps printed so far
}

func newUI(w io.Writer) *ui { return &ui{w: w} }

// step prints the next numbered step.
func (u *ui) step(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.n++
	fmt.Fprintf(u.w, "[%d] %s\n", u.n, fmt.Sprintf(format, args...))
}

// line prints one line of detail under the current step.
func (u *ui) line(prefix, text string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.w, "%s%s\n", prefix, text)
}

func (u *ui) printf(format string, args ...any) {
	u.mu.Lock()
	defer u.mu.Unlock()
	fmt.Fprintf(u.w, format, args...)
}

// writer returns an io.Writer that prints whatever a process writes, line by
// line, behind prefix, and remembers the last lines for error messages.
func (u *ui) writer(prefix string) *lineWriter {
	return &lineWriter{u: u, prefix: prefix}
}

// tailLines is how many of a process's last lines an error quotes.
const tailLines = 30

// lineWriter is safe for concurrent use: exec's copying goroutine writes
// while the demo reads the tail.
type lineWriter struct {
	u      *ui
	prefix string

	mu      sync.Mutex
	partial []byte
	tail    []string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		w.emit(string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	return len(p), nil
}

// flush prints a last line that ended without a newline.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 {
		w.emit(string(w.partial))
		w.partial = nil
	}
}

func (w *lineWriter) emit(line string) {
	line = strings.TrimRight(line, "\r")
	w.u.line(w.prefix, line)
	w.tail = append(w.tail, line)
	if len(w.tail) > tailLines {
		w.tail = w.tail[len(w.tail)-tailLines:]
	}
}

// lastLines returns the last lines written, indented for an error message.
func (w *lineWriter) lastLines() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.tail) == 0 {
		return "    (no output)"
	}
	return "    " + strings.Join(w.tail, "\n    ")
}
