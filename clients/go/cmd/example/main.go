// Command example observes a short sequence, learns it, observes its start
// again and prints what KATO predicts comes next. The session is client-held:
// the SessionState each response returns is sent with the next call.
//
//	go run ./cmd/example -target 127.0.0.1:50051
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	katov1 "github.com/kato-grpc/kato-grpc/clients/go/katov1"
)

func symbols(events []*katov1.Event) string {
	parts := make([]string, len(events))
	for i, e := range events {
		parts[i] = "[" + strings.Join(e.GetSymbols(), " ") + "]"
	}
	return strings.Join(parts, " ")
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "the server address, host:port")
	kbID := flag.String("kb", fmt.Sprintf("example-go-%d", time.Now().UnixNano()), "the knowledge base to learn into")
	flag.Parse()

	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	client := katov1.NewKatoServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// observe folds one event into the state and returns the new state.
	observe := func(state *katov1.SessionState, strings ...string) *katov1.SessionState {
		r, err := client.Observe(ctx, &katov1.ObserveRequest{
			Session:     &katov1.ObserveRequest_State{State: state},
			Observation: &katov1.Observation{Strings: strings},
		})
		if err != nil {
			log.Fatalf("Observe: %v", err)
		}
		return r.GetState()
	}

	state := &katov1.SessionState{KbId: *kbID}
	for _, event := range [][]string{{"hello", "world"}, {"how"}, {"are", "you"}} {
		state = observe(state, event...)
	}
	learned, err := client.Learn(ctx, &katov1.LearnRequest{Session: &katov1.LearnRequest_State{State: state}})
	if err != nil {
		log.Fatalf("Learn: %v", err)
	}
	fmt.Printf("learned %s into %s\n", learned.GetPatternName(), *kbID)

	state = learned.GetState() // Learn cleared the short-term memory
	state = observe(state, "world", "hello")
	state = observe(state, "how")
	predicted, err := client.Predict(ctx, &katov1.PredictRequest{Session: &katov1.PredictRequest_State{State: state}})
	if err != nil {
		log.Fatalf("Predict: %v", err)
	}
	for _, p := range predicted.GetPredictions() {
		fmt.Printf("prediction %s: similarity %.3f, present %s, future %s\n",
			p.GetName(), p.GetSimilarity(), symbols(p.GetPresent()), symbols(p.GetFuture()))
	}

	// A rejected call says which field was wrong in a google.rpc.BadRequest.
	_, err = client.UpdateConfig(ctx, &katov1.UpdateConfigRequest{
		Session: &katov1.UpdateConfigRequest_State{State: state},
		Config:  &katov1.SessionConfig{RecallThreshold: proto.Float64(1.5)},
	})
	st := status.Convert(err)
	fmt.Printf("UpdateConfig(recall_threshold=1.5): %s\n", st.Code())
	for _, detail := range st.Details() {
		if bad, ok := detail.(*errdetails.BadRequest); ok {
			for _, v := range bad.GetFieldViolations() {
				fmt.Printf("  %s: %s\n", v.GetField(), v.GetDescription())
			}
		}
	}
}
