package main

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// The headers a caller sends reach the server under the metadata keys it reads.
func TestIncomingHeadersBecomeTheServersMetadataKeys(t *testing.T) {
	mux := runtime.NewServeMux(runtime.WithIncomingHeaderMatcher(incomingHeader))
	r := httptest.NewRequest("GET", "/v1/sessions/x", nil)
	for header, value := range map[string]string{
		"Authorization": "Bearer k",
		"X-Request-Id":  "rid-1",
		"Traceparent":   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"Tracestate":    "vendor=1",
	} {
		r.Header.Set(header, value)
	}
	ctx, err := runtime.AnnotateContext(context.Background(), mux, r, "/kato.v1.KatoService/GetSession")
	if err != nil {
		t.Fatal(err)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	for key, want := range map[string]string{
		"authorization": "Bearer k",
		"x-request-id":  "rid-1",
		"traceparent":   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"tracestate":    "vendor=1",
	} {
		if got := md.Get(key); len(got) != 1 || got[0] != want {
			t.Errorf("metadata %q = %v, want [%q]", key, got, want)
		}
	}
}

func TestAnErrorIsItsStatusAsJSONWithTheServersRequestID(t *testing.T) {
	mux := runtime.NewServeMux()
	md := runtime.ServerMetadata{TrailerMD: metadata.Pairs("x-request-id", "rid-1")}
	ctx := runtime.NewServerMetadataContext(context.Background(), md)
	w := httptest.NewRecorder()
	r := httptest.NewRequest("GET", "/v1/sessions/x", nil)
	requestIDFromTrailer(ctx, w)
	runtime.DefaultHTTPErrorHandler(ctx, mux, &runtime.JSONPb{}, w, r, status.Error(codes.NotFound, "no such session"))
	if w.Code != http.StatusNotFound || w.Header().Get("X-Request-Id") != "rid-1" {
		t.Fatalf("status %d, X-Request-Id %q", w.Code, w.Header().Get("X-Request-Id"))
	}
	var body struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Code != 5 || body.Message != "no such session" {
		t.Fatalf("body %s (%v)", w.Body.String(), err)
	}
}
