package servicetest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ChildVar is set, in the environment of a child process started by
// StartChild, to the name of the test it runs; a child test skips unless it
// finds its own name there.
const ChildVar = "RESILIENCE_CHILD"

// IsChild reports whether this process is a child started by StartChild to
// run the test t.
func IsChild(t testing.TB) bool {
	return os.Getenv(ChildVar) == t.Name()
}

// Child is a test of this package running in a process of its own, for
// tests that stop it (SIGSTOP), let it go on (SIGCONT) or kill it (SIGKILL)
// the way an operating system or an orchestrator would.
type Child struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
	err  error // of Wait, once done is closed
}

// StartChild runs the test named test of the running test binary in a new
// process, with env added to this process's environment and ChildVar set
// to test. The child's output is kept for Output. It is killed when the
// calling test ends, if it still runs.
func StartChild(t testing.TB, test string, env ...string) *Child {
	t.Helper()
	c := &Child{done: make(chan struct{})}
	c.cmd = exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v")
	c.cmd.Env = append(append(os.Environ(), env...), ChildVar+"="+test)
	c.cmd.Stdout = (*lockedWriter)(c)
	c.cmd.Stderr = (*lockedWriter)(c)
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("servicetest: start %s: %v", test, err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() {
		c.Continue()
		c.Kill()
	})
	return c
}

type lockedWriter Child

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.Write(p)
}

// Pid returns the child's process ID.
func (c *Child) Pid() int { return c.cmd.Process.Pid }

// Output returns what the child wrote so far, stdout and stderr together.
func (c *Child) Output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// Stop sends SIGSTOP and returns once every thread of the child is stopped,
// so that nothing the child does can be dated after Stop returns and before
// Continue. It fails t if the child has exited, or does not stop within a
// minute.
func (c *Child) Stop(t testing.TB) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("servicetest: SIGSTOP %d: %v", c.Pid(), err)
	}
	deadline := time.Now().Add(time.Minute)
	for !c.stopped() {
		select {
		case <-c.done:
			t.Fatalf("servicetest: child %d exited instead of stopping: %v\n%s", c.Pid(), c.err, c.Output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("servicetest: child %d did not stop within a minute", c.Pid())
		}
		time.Sleep(time.Millisecond)
	}
}

// stopped reports whether every thread of the child is in state T (stopped)
// according to /proc.
func (c *Child) stopped() bool {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", c.Pid()))
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			return false
		}
		// The state follows the command name, which is in parentheses and
		// may hold spaces: "pid (comm) S ...".
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) || (s[i+2] != 'T' && s[i+2] != 't') {
			return false
		}
	}
	return true
}

// Continue sends SIGCONT: a stopped child goes on.
func (c *Child) Continue() {
	_ = c.cmd.Process.Signal(syscall.SIGCONT)
}

// Kill sends SIGKILL and waits for the child to end.
func (c *Child) Kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// Done is closed when the child has ended.
func (c *Child) Done() <-chan struct{} { return c.done }
