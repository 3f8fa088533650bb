package kato

import (
	"context"
	"crypto/rand"
	"fmt"
	"path"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	katov1 "github.com/kato-grpc/kato-grpc/clients/go/katov1"
)

// NewRequestID is a fresh request_id: a random UUID4, as AIP-155 recommends.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// withRequestID gives a write without a request_id a fresh one, in place, so
// that every attempt of the call carries the same id.
func withRequestID(req any) {
	switch r := req.(type) {
	case *katov1.ObserveRequest:
		if r.RequestId == "" {
			r.RequestId = NewRequestID()
		}
	case *katov1.ObserveSequenceRequest:
		if r.RequestId == "" {
			r.RequestId = NewRequestID()
		}
	case *katov1.LearnRequest:
		if r.RequestId == "" {
			r.RequestId = NewRequestID()
		}
	}
}

// unaryInterceptor applies the client's deadline, the request id, the
// RetryInfo-driven retry of RESOURCE_EXHAUSTED, and turns a failure into *Error.
// The UNAVAILABLE retries happen below it, in gRPC, from the service config.
func unaryInterceptor(timeout time.Duration, retry *RetryPolicy) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if _, ok := ctx.Deadline(); !ok && timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		withRequestID(req)
		safe := retry != nil && path.Dir(method) == "/"+ServiceName && slices.Contains(SafeToRetry, path.Base(method))
		for attempt := 1; ; attempt++ {
			var trailer metadata.MD
			err := invoker(ctx, method, req, reply, cc, append(opts, grpc.Trailer(&trailer))...)
			if err == nil {
				return nil
			}
			e := FromError(err, trailer)
			if !safe || e.Code != codes.ResourceExhausted || e.RetryDelay <= 0 || attempt >= retry.MaxAttempts {
				return e
			}
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < e.RetryDelay {
				return e // the server asks us to come back after the deadline: give up now
			}
			wait := time.NewTimer(e.RetryDelay)
			select {
			case <-ctx.Done():
				wait.Stop()
				return e
			case <-wait.C:
			}
		}
	}
}
