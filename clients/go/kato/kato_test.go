package kato_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"

	"github.com/kato-grpc/kato-grpc/clients/go/kato"
	katov1 "github.com/kato-grpc/kato-grpc/clients/go/katov1"
)

var kbCount struct {
	sync.Mutex
	n int
}

// freshKB is a knowledge base no other test (or earlier run) uses.
func freshKB(t *testing.T) string {
	kbCount.Lock()
	defer kbCount.Unlock()
	kbCount.n++
	return fmt.Sprintf("go-%s-%d-%d", strings.ReplaceAll(t.Name(), "/", "."), time.Now().UnixNano(), kbCount.n)
}

func dial(t *testing.T, target string, opts ...kato.Option) *kato.Client {
	t.Helper()
	c, err := kato.New(target, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func symbols(events []*katov1.Event) [][]string {
	out := make([][]string, len(events))
	for i, e := range events {
		out[i] = e.GetSymbols()
	}
	return out
}

// teach learns hello world / how / are you and observes the start again.
func teach(t *testing.T, ctx context.Context, s interface {
	Observe(context.Context, *katov1.Observation, ...kato.ObserveOption) (*katov1.ObserveResponse, error)
	Learn(context.Context) (string, error)
}) string {
	t.Helper()
	for _, event := range [][]string{{"hello", "world"}, {"how"}, {"are", "you"}} {
		must[*katov1.ObserveResponse](t)(s.Observe(ctx, kato.Strings(event...)))
	}
	name := must[string](t)(s.Learn(ctx))
	if !strings.HasPrefix(name, "PTRN|") {
		t.Fatalf("learned %q", name)
	}
	must[*katov1.ObserveResponse](t)(s.Observe(ctx, kato.Strings("hello", "world")))
	must[*katov1.ObserveResponse](t)(s.Observe(ctx, kato.Strings("how")))
	return name
}

func assertFuture(t *testing.T, r *katov1.PredictResponse, name string) {
	t.Helper()
	if len(r.GetPredictions()) == 0 {
		t.Fatal("no predictions")
	}
	p := r.GetPredictions()[0]
	if "PTRN|"+p.GetName() != name && p.GetName() != name {
		t.Fatalf("prediction %s, want %s", p.GetName(), name)
	}
	if got := symbols(p.GetFuture()); !slices.EqualFunc(got, [][]string{{"are", "you"}}, slices.Equal) {
		t.Fatalf("future %v, want [[are you]]", got)
	}
}

func TestClientHeldSessionThreadsItsState(t *testing.T) {
	c := dial(t, sharedServer(t).Target)
	ctx := context.Background()
	s := c.Session(freshKB(t))
	name := teach(t, ctx, s)
	if got := must[[][]string](t)(s.Stm(ctx)); !slices.EqualFunc(got, [][]string{{"hello", "world"}, {"how"}}, slices.Equal) {
		t.Fatalf("stm %v", got)
	}
	if s.State().GetSignature() == nil && len(s.State().GetSignature()) == 0 {
		t.Log("state carries no signature") // fresh servers sign; nothing to assert beyond threading
	}
	assertFuture(t, must[*katov1.PredictResponse](t)(s.Predict(ctx)), name)

	// A state saved and resumed is the same session.
	saved := must[[]byte](t)(proto.Marshal(s.State()))
	var state katov1.SessionState
	if err := proto.Unmarshal(saved, &state); err != nil {
		t.Fatal(err)
	}
	again := c.ResumeSession(&state)
	assertFuture(t, must[*katov1.PredictResponse](t)(again.Predict(ctx)), name)
	if err := again.ClearStm(ctx); err != nil {
		t.Fatal(err)
	}
	if got := must[[][]string](t)(again.Stm(ctx)); len(got) != 0 {
		t.Fatalf("stm after clear %v", got)
	}
}

func TestServerHeldSession(t *testing.T) {
	c := dial(t, sharedServer(t).Target)
	ctx := context.Background()
	s := must[*kato.ServerSession](t)(c.CreateSession(ctx, freshKB(t), &kato.SessionOptions{
		TTLSeconds: 600, Metadata: map[string]any{"owner": "go-test"},
	}))
	name := teach(t, ctx, s)
	assertFuture(t, must[*katov1.PredictResponse](t)(s.Predict(ctx)), name)
	info := must[*katov1.Session](t)(s.Get(ctx))
	if info.GetSessionId() != s.ID() || info.GetMetadata().GetFields()["owner"].GetStringValue() != "go-test" {
		t.Fatalf("session %v", info)
	}
	config := must[*katov1.SessionConfig](t)(s.Configure(ctx, &katov1.SessionConfig{MaxPredictions: proto.Int32(3)}))
	if config.GetMaxPredictions() != 3 {
		t.Fatalf("config %v", config)
	}
	if err := s.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	_, err := s.Predict(ctx)
	e, ok := kato.AsError(err)
	if !ok || e.Code != codes.NotFound || e.Reason != "SESSION_NOT_FOUND" || e.RequestID == "" {
		t.Fatalf("predict on a deleted session: %#v", err)
	}
}

func TestRejectedFieldIsTyped(t *testing.T) {
	c := dial(t, sharedServer(t).Target)
	s := c.Session(freshKB(t))
	_, err := s.Configure(context.Background(), &katov1.SessionConfig{RecallThreshold: proto.Float64(1.5)})
	e, ok := kato.AsError(err)
	if !ok {
		t.Fatalf("not a *kato.Error: %#v", err)
	}
	if e.Code != codes.InvalidArgument {
		t.Fatalf("code %s", e.Code)
	}
	if why, found := e.Violation("config.recall_threshold"); !found || why == "" {
		t.Fatalf("violations %v", e.FieldViolations)
	}
	if e.RequestID == "" {
		t.Fatal("no request id")
	}
	if !strings.Contains(e.Error(), "config.recall_threshold") {
		t.Fatalf("message %q", e.Error())
	}
}

func TestStreamThreadsTheState(t *testing.T) {
	c := dial(t, sharedServer(t).Target)
	ctx := context.Background()
	s := c.Session(freshKB(t))
	st := must[*kato.Stream](t)(s.Stream(ctx, false))
	for _, event := range [][]string{{"a"}, {"b"}, {"c"}} {
		must[*katov1.ObserveResponse](t)(st.Observe(kato.Strings(event...)))
	}
	// A rejected step is answered with its error and the stream goes on.
	_, err := st.Observe(&katov1.Observation{Strings: []string{"d"}, Emotives: map[string]float64{"joy": math.Inf(1)}})
	if e, ok := kato.AsError(err); !ok || e.Code != codes.InvalidArgument || len(e.FieldViolations) == 0 {
		t.Fatalf("bad step: %#v", err)
	}
	name := must[string](t)(st.Learn())
	must[*katov1.ObserveResponse](t)(st.Observe(kato.Strings("a")))
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	// The session's state is the stream's final one: STM [a], the pattern learned.
	if got := must[[][]string](t)(s.Stm(ctx)); !slices.EqualFunc(got, [][]string{{"a"}}, slices.Equal) {
		t.Fatalf("stm after the stream %v", got)
	}
	if _, err := c.Raw.GetPattern(ctx, &katov1.GetPatternRequest{KbId: s.State().GetKbId(), Name: name}); err != nil {
		t.Fatal(err)
	}
}

func TestListPatternsPages(t *testing.T) {
	c := dial(t, sharedServer(t).Target)
	ctx := context.Background()
	s := c.Session(freshKB(t))
	var learned []string
	for i := range 5 {
		must[*katov1.ObserveResponse](t)(s.Observe(ctx, kato.Strings(fmt.Sprint("x", i))))
		must[*katov1.ObserveResponse](t)(s.Observe(ctx, kato.Strings("y")))
		learned = append(learned, must[string](t)(s.Learn(ctx)))
	}
	slices.Sort(learned)
	var listed []string
	for p, err := range c.ListPatterns(ctx, s.State().GetKbId(), 2) {
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, p.GetName())
	}
	if !slices.Equal(listed, learned) {
		t.Fatalf("listed %v, want %v", listed, learned)
	}
	found := false
	for kb, err := range c.ListKnowledgeBases(ctx, 1) {
		if err != nil {
			t.Fatal(err)
		}
		if kb.GetKbId() == s.State().GetKbId() {
			found = kb.GetPatternCount() == 5
		}
	}
	if !found {
		t.Fatalf("%s with 5 patterns is not listed", s.State().GetKbId())
	}
	for _, err := range c.ListPatterns(ctx, "bad kb id", 0) {
		if e, ok := kato.AsError(err); !ok || e.Code != codes.InvalidArgument {
			t.Fatalf("bad kb: %#v", err)
		}
	}
}

// attempts counts the attempts of each method and reports the first request
// of an armed method written to the connection.
type attempts struct {
	mu     sync.Mutex
	count  map[string]int
	armed  string
	sentCh chan struct{}
}

type methodKey struct{}

func newAttempts() *attempts { return &attempts{count: map[string]int{}, sentCh: make(chan struct{})} }

func (a *attempts) arm(method string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.armed = method
}

func (a *attempts) of(method string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.count[method]
}

func (a *attempts) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return context.WithValue(ctx, methodKey{}, info.FullMethodName)
}

func (a *attempts) HandleRPC(ctx context.Context, s stats.RPCStats) {
	method, _ := ctx.Value(methodKey{}).(string)
	a.mu.Lock()
	defer a.mu.Unlock()
	switch s.(type) {
	case *stats.Begin:
		a.count[method]++
	case *stats.OutPayload:
		if a.armed != "" && a.armed == method {
			a.armed = ""
			close(a.sentCh)
		}
	}
}

func (a *attempts) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (a *attempts) HandleConn(context.Context, stats.ConnStats)                       {}

func TestReadIsRetriedAcrossAServerRestart(t *testing.T) {
	dir := t.TempDir()
	first := startServer(t, dir, "0")
	counted := newAttempts()
	c := dial(t, first.Target, kato.WithDialOptions(
		grpc.WithStatsHandler(counted),
		// Reconnect soon after the restart rather than after gRPC's back-off of up to 2 min.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}}),
	))
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second) // hang guard
	defer cancel()
	s := c.Session(freshKB(t))
	name := teach(t, ctx, s)

	// Freeze the server, send the Predict into its connection, then kill it:
	// the first attempt fails UNAVAILABLE after it was sent.
	first.Signal(t, syscall.SIGSTOP)
	counted.arm("/kato.v1.KatoService/Predict")
	type result struct {
		r   *katov1.PredictResponse
		err error
	}
	done := make(chan result, 1)
	go func() {
		r, err := s.Predict(ctx)
		done <- result{r, err}
	}()
	select {
	case <-counted.sentCh:
	case <-ctx.Done():
		t.Fatal("the Predict was never sent")
	}
	first.Kill()
	// The same port and data directory: the new server verifies the old one's states.
	startServer(t, dir, first.Port())
	got := <-done
	if got.err != nil {
		t.Fatalf("Predict across the restart: %v", got.err)
	}
	assertFuture(t, got.r, name)
	if n := counted.of("/kato.v1.KatoService/Predict"); n < 2 {
		t.Fatalf("Predict took %d attempt(s), want a retry", n)
	}
}

func TestOverTheLimitIsNotRetried(t *testing.T) {
	counted := newAttempts()
	c := dial(t, sharedServer(t).Target, kato.WithDialOptions(grpc.WithStatsHandler(counted)))
	s := c.Session(freshKB(t))
	req := &katov1.ObserveSequenceRequest{}
	for range 10001 {
		req.Observations = append(req.Observations, kato.Strings("a"))
	}
	_, err := s.ObserveSequence(context.Background(), req)
	e, ok := kato.AsError(err)
	if !ok || e.Code != codes.ResourceExhausted {
		t.Fatalf("10001 observations: %#v", err)
	}
	if req.GetRequestId() == "" {
		t.Fatal("the write was sent without a request_id")
	}
	if n := counted.of("/kato.v1.KatoService/ObserveSequence"); n != 1 {
		t.Fatalf("%d attempts of a RESOURCE_EXHAUSTED without RetryInfo, want 1", n)
	}
}

func TestServiceConfigRetriesOnlySafeCalls(t *testing.T) {
	config, err := kato.ServiceConfig(&kato.DefaultRetry, 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"method":"Predict"`, `"method":"Learn"`, `"retryableStatusCodes":["UNAVAILABLE"]`, `"timeout":"30s"`} {
		if !strings.Contains(config, want) {
			t.Fatalf("%s lacks %s", config, want)
		}
	}
	for _, never := range []string{"CreateSession", "DeletePattern", "StreamObservations"} {
		if strings.Contains(config, never) {
			t.Fatalf("%s retries %s", config, never)
		}
	}
	if _, err := kato.ServiceConfig(&kato.RetryPolicy{MaxAttempts: 1}, 0); err == nil {
		t.Fatal("a one-attempt policy was accepted")
	}
}
