// Package kato is a client of kato.v1.KatoService over the generated stubs in
// katov1: deadlines and a retry policy given as gRPC service config, typed
// errors, sessions that thread their state, the observation stream and paged
// listings.
//
//	c, err := kato.New("127.0.0.1:50051")
//	s := c.Session("my-kb")                      // client-held: the state lives in s
//	s.Observe(ctx, kato.Strings("hello", "world"))
//	s.Observe(ctx, kato.Strings("how"))
//	name, err := s.Learn(ctx)                    // PTRN|...
//
// Calls that are safe to repeat are retried: reads, and Observe,
// ObserveSequence and Learn, which always carry a request_id (the client
// writes a fresh UUID4 into a request that has none), so the server applies
// a repeated call once. See RetryPolicy.
package kato

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	katov1 "github.com/kato-grpc/kato-grpc/clients/go/katov1"
)

// ServiceName is the full name of the API's service.
const ServiceName = "kato.v1.KatoService"

// SafeToRetry lists the methods the retry policy covers: reads, idempotent
// calls and the writes that carry a request_id (filled in by the client).
// CreateSession, DeleteSession, DeletePattern, UpdatePattern, ClearStm,
// ClearAll, UpdateConfig, UpdateSessionConfig, ExtendSession and the stream
// are never retried: a repeat would answer differently or do more.
var SafeToRetry = []string{
	"Predict", "GetStm", "GetPerceptData", "GetCognitionData", "GetConfig",
	"GetPattern", "ListPatterns", "ListKnowledgeBases", "GetSymbolStats", "GetSymbolAffinity",
	"ClearKnowledgeBase", "FinalizeTraining", "GetSession", "SessionExists",
	"Observe", "ObserveSequence", "Learn",
}

// RetryPolicy is the gRPC retry policy of the calls in SafeToRetry, on
// UNAVAILABLE. The same calls are retried on RESOURCE_EXHAUSTED only when the
// server says when to come back (a google.rpc.RetryInfo detail), after that
// delay; other RESOURCE_EXHAUSTED errors (input over a limit) are final.
type RetryPolicy struct {
	MaxAttempts       int           // attempts in all, the first included; gRPC caps it at 5
	InitialBackoff    time.Duration // the first back-off bound; each attempt waits uniform in [0, bound]
	MaxBackoff        time.Duration
	BackoffMultiplier float64
}

// DefaultRetry is the policy New uses unless told otherwise.
var DefaultRetry = RetryPolicy{MaxAttempts: 5, InitialBackoff: 100 * time.Millisecond, MaxBackoff: 5 * time.Second, BackoffMultiplier: 2}

type options struct {
	timeout time.Duration
	retry   *RetryPolicy
	creds   credentials.TransportCredentials
	dial    []grpc.DialOption
}

// Option configures New.
type Option func(*options)

// WithTimeout sets the deadline of a call whose context has none (default
// 30 s; 0 leaves such calls unbounded). It is also the service config's
// per-call timeout.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRetry replaces DefaultRetry.
func WithRetry(p RetryPolicy) Option { return func(o *options) { o.retry = &p } }

// WithoutRetry makes every call a single attempt.
func WithoutRetry() Option { return func(o *options) { o.retry = nil } }

// WithTransportCredentials dials with TLS (the default is plaintext).
func WithTransportCredentials(c credentials.TransportCredentials) Option {
	return func(o *options) { o.creds = c }
}

// WithDialOptions adds grpc.DialOptions (interceptors, stats handlers, ...).
func WithDialOptions(d ...grpc.DialOption) Option {
	return func(o *options) { o.dial = append(o.dial, d...) }
}

// Client is a connection to a KATO gRPC server. It is safe for concurrent use.
type Client struct {
	conn *grpc.ClientConn
	// Raw is the generated stub on the same connection: the same deadlines,
	// retries, request ids and typed errors apply to it.
	Raw     katov1.KatoServiceClient
	timeout time.Duration
}

// New connects to target (host:port). The connection is made lazily, at the
// first call.
func New(target string, opts ...Option) (*Client, error) {
	p := DefaultRetry
	o := options{timeout: 30 * time.Second, retry: &p, creds: insecure.NewCredentials()}
	for _, opt := range opts {
		opt(&o)
	}
	config, err := ServiceConfig(o.retry, o.timeout)
	if err != nil {
		return nil, err
	}
	dial := append([]grpc.DialOption{
		grpc.WithTransportCredentials(o.creds),
		grpc.WithDefaultServiceConfig(config),
		grpc.WithChainUnaryInterceptor(unaryInterceptor(o.timeout, o.retry)),
	}, o.dial...)
	conn, err := grpc.NewClient(target, dial...)
	if err != nil {
		return nil, err
	}
	return &Client{conn: conn, Raw: katov1.NewKatoServiceClient(conn), timeout: o.timeout}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Conn is the underlying connection (for the health service, say).
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

type methodName struct {
	Service string `json:"service"`
	Method  string `json:"method,omitempty"`
}

type retryJSON struct {
	MaxAttempts          int      `json:"maxAttempts"`
	InitialBackoff       string   `json:"initialBackoff"`
	MaxBackoff           string   `json:"maxBackoff"`
	BackoffMultiplier    float64  `json:"backoffMultiplier"`
	RetryableStatusCodes []string `json:"retryableStatusCodes"`
}

type methodConfig struct {
	Name         []methodName `json:"name"`
	Timeout      string       `json:"timeout,omitempty"`
	WaitForReady *bool        `json:"waitForReady,omitempty"`
	RetryPolicy  *retryJSON   `json:"retryPolicy,omitempty"`
}

func seconds(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }

// ServiceConfig is the gRPC service config New dials with: every method gets
// `timeout`; the methods of SafeToRetry also get the retry policy and
// waitForReady, so a retry waits (within the deadline) for a server that is
// restarting instead of failing at once. A nil policy retries nothing.
func ServiceConfig(retry *RetryPolicy, timeout time.Duration) (string, error) {
	all := methodConfig{Name: []methodName{{Service: ServiceName}}}
	if timeout > 0 {
		all.Timeout = seconds(timeout)
	}
	configs := []methodConfig{all}
	if retry != nil {
		if retry.MaxAttempts < 2 || retry.InitialBackoff <= 0 || retry.MaxBackoff <= 0 || retry.BackoffMultiplier <= 0 {
			return "", fmt.Errorf("kato: retry policy %+v needs MaxAttempts >= 2 and positive back-offs and multiplier", *retry)
		}
		safe := methodConfig{Timeout: all.Timeout, WaitForReady: new(bool), RetryPolicy: &retryJSON{
			MaxAttempts:          retry.MaxAttempts,
			InitialBackoff:       seconds(retry.InitialBackoff),
			MaxBackoff:           seconds(retry.MaxBackoff),
			BackoffMultiplier:    retry.BackoffMultiplier,
			RetryableStatusCodes: []string{"UNAVAILABLE"},
		}}
		*safe.WaitForReady = true
		for _, m := range SafeToRetry {
			safe.Name = append(safe.Name, methodName{Service: ServiceName, Method: m})
		}
		configs = append(configs, safe)
	}
	out, err := json.Marshal(map[string]any{"methodConfig": configs})
	return string(out), err
}

// background bounds ctx by the client's timeout when it has no deadline.
func (c *Client) background(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}
