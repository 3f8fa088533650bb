package kato_test

// A real server for the tests: `python -m kato_grpc serve` from this
// repository, on a loopback port, with a data directory of the test's own.
// KATO_PYTHON names the interpreter (default: the repository's .venv); without
// one the tests skip, or fail when CI=true.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

var listening = regexp.MustCompile(`listening on ([\d.]+:\d+)`)

type server struct {
	cmd     *exec.Cmd
	Target  string
	dataDir string
	mu      sync.Mutex
	output  strings.Builder
}

func repoRoot() string {
	if root := os.Getenv("KATO_ROOT"); root != "" {
		return root
	}
	root, _ := filepath.Abs(filepath.Join("..", "..", ".."))
	return root
}

// python is the interpreter to serve with, or why there is none.
func python(root string) (string, error) {
	if p := os.Getenv("KATO_PYTHON"); p != "" {
		return p, nil
	}
	p := filepath.Join(root, ".venv", "bin", "python")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("no server to test against: set KATO_PYTHON or run make setup (%v)", err)
	}
	return p, nil
}

// needServer skips the test when there is no interpreter to serve with, or
// fails it when CI=true.
func needServer(t *testing.T) {
	t.Helper()
	if _, err := python(repoRoot()); err != nil {
		if ci := strings.ToLower(strings.TrimSpace(os.Getenv("CI"))); ci == "1" || ci == "true" || ci == "yes" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
}

// startServer starts a server of the test's own on port ("0": any) over
// dataDir; it is stopped when the test ends.
func startServer(t *testing.T, dataDir, port string) *server {
	t.Helper()
	needServer(t)
	s, err := launch(dataDir, port)
	if s != nil {
		t.Cleanup(s.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// launch starts a server and waits until its health service says SERVING.
func launch(dataDir, port string) (*server, error) {
	root := repoRoot()
	py, err := python(root)
	if err != nil {
		return nil, err
	}
	s := &server{dataDir: dataDir}
	s.cmd = exec.Command(py, "-m", "kato_grpc", "serve", "--host", "127.0.0.1", "--port", port, "--data-dir", dataDir)
	s.cmd.Dir = root
	s.cmd.Env = append(os.Environ(), "PYTHONPATH="+root+string(os.PathListSeparator)+filepath.Join(root, "clients", "python"))
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	found := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			s.mu.Lock()
			s.output.WriteString(lines.Text() + "\n")
			s.mu.Unlock()
			if m := listening.FindStringSubmatch(lines.Text()); m != nil {
				found <- m[1]
			}
		}
		close(found)
	}()
	select {
	case target, ok := <-found:
		if !ok {
			return s, fmt.Errorf("server exited before listening:\n%s", s.Output())
		}
		s.Target = target
	case <-time.After(120 * time.Second): // a hang guard, not a wait
		return s, fmt.Errorf("server did not listen:\n%s", s.Output())
	}
	return s, s.waitServing()
}

func (s *server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.output.String()
}

func (s *server) Port() string {
	_, port, _ := net.SplitHostPort(s.Target)
	return port
}

// waitServing asks the health service until it says SERVING. (Check, not
// Watch: the server's interceptors break the streaming Watch, see the report.)
func (s *server) waitServing() error {
	conn, err := grpc.NewClient(s.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // hang guard
	defer cancel()
	health := healthpb.NewHealthClient(conn)
	for {
		r, err := health.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		if err != nil {
			return fmt.Errorf("health check: %v\n%s", err, s.Output())
		}
		if r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		time.Sleep(20 * time.Millisecond) // NOT_SERVING: its back ends are still coming up
	}
}

// Signal sends sig to the server process.
func (s *server) Signal(t *testing.T, sig syscall.Signal) {
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// Kill kills the server at once and waits for it to be gone.
func (s *server) Kill() {
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
}

// Stop asks the server to drain and stop, and waits (killing it after a while).
func (s *server) Stop() {
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

var (
	sharedOnce sync.Once
	shared     *server
	sharedErr  error
	sharedDir  string
)

// sharedServer is one server for the tests that never stop it (TestMain stops it).
func sharedServer(t *testing.T) *server {
	t.Helper()
	needServer(t)
	sharedOnce.Do(func() {
		if sharedDir, sharedErr = os.MkdirTemp("", "kato-go-test-"); sharedErr == nil {
			shared, sharedErr = launch(sharedDir, "0")
		}
	})
	if sharedErr != nil {
		t.Fatal(sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	if sharedDir != "" {
		os.RemoveAll(sharedDir)
	}
	os.Exit(code)
}
