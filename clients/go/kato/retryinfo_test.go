package kato_test

// The KATO server never asks a client to come back later, so the
// RESOURCE_EXHAUSTED-with-RetryInfo path is driven by a gRPC server of the
// test's own that does, once per call.

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/kato-grpc/kato-grpc/clients/go/kato"
	katov1 "github.com/kato-grpc/kato-grpc/clients/go/katov1"
)

type busyServer struct {
	katov1.UnimplementedKatoServiceServer
	calls atomic.Int32
}

func busy(delay time.Duration) error {
	st, _ := status.New(codes.ResourceExhausted, "busy: come back later").WithDetails(
		&errdetails.RetryInfo{RetryDelay: durationpb.New(delay)})
	return st.Err()
}

// Predict is busy on its first attempt; Learn always is (so its retries run out).
func (b *busyServer) Predict(context.Context, *katov1.PredictRequest) (*katov1.PredictResponse, error) {
	if b.calls.Add(1) == 1 {
		return nil, busy(20 * time.Millisecond)
	}
	return &katov1.PredictResponse{}, nil
}

func (b *busyServer) ClearStm(context.Context, *katov1.ClearStmRequest) (*katov1.ClearStmResponse, error) {
	b.calls.Add(1)
	return nil, busy(time.Millisecond)
}

func serveBusy(t *testing.T) (*busyServer, string) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	b := &busyServer{}
	katov1.RegisterKatoServiceServer(srv, b)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return b, lis.Addr().String()
}

func TestResourceExhaustedWithRetryInfoIsRetriedAfterItsDelay(t *testing.T) {
	b, target := serveBusy(t)
	c := dial(t, target)
	if _, err := c.Session("kb").Predict(context.Background()); err != nil {
		t.Fatalf("Predict: %v", err)
	}
	if n := b.calls.Load(); n != 2 {
		t.Fatalf("%d attempts, want 2", n)
	}
}

func TestAnUnsafeCallIsNotRetriedEvenWithRetryInfo(t *testing.T) {
	b, target := serveBusy(t)
	c := dial(t, target)
	err := c.Session("kb").ClearStm(context.Background())
	e, ok := kato.AsError(err)
	if !ok || e.Code != codes.ResourceExhausted || e.RetryDelay != time.Millisecond {
		t.Fatalf("ClearStm: %#v", err)
	}
	if n := b.calls.Load(); n != 1 {
		t.Fatalf("%d attempts of ClearStm, want 1", n)
	}
}
