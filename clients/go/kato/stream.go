package kato

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"

	"google.golang.org/grpc/metadata"

	katov1 "github.com/kato-grpc/kato-grpc/clients/go/katov1"
)

// Stream is one StreamObservations call, step by step: each method sends one
// step and waits for its answer (the server answers steps in order and reads
// the next one only after answering). A rejected step returns its *Error and
// the stream goes on; any other error ends it. Not retried.
type Stream struct {
	s      *calls
	stream katov1.KatoService_StreamObservationsClient
	cancel context.CancelFunc
	// StmLength is the session's short-term memory length when the stream opened.
	StmLength int32
}

// Stream opens a stream on the session. Close it to end the call; a
// client-held session gets the final state then.
func (s *calls) Stream(ctx context.Context, returnPredictions bool) (*Stream, error) {
	open := &katov1.StreamOpen{ReturnPredictions: returnPredictions}
	if s.id != "" {
		open.Session = &katov1.StreamOpen_SessionId{SessionId: s.id}
	} else {
		open.Session = &katov1.StreamOpen_State{State: s.state}
	}
	ctx, cancel := s.c.background(ctx)
	raw, err := s.c.Raw.StreamObservations(ctx)
	if err != nil {
		cancel()
		return nil, FromError(err, nil)
	}
	st := &Stream{s: s, stream: raw, cancel: cancel}
	answer, err := st.step(&katov1.StreamObservationsRequest{Step: &katov1.StreamObservationsRequest_Open{Open: open}})
	if err != nil {
		cancel()
		return nil, err
	}
	st.StmLength = answer.GetOpened().GetStmLength()
	return st, nil
}

func (st *Stream) fail(err error) error {
	return FromError(err, st.trailer())
}

func (st *Stream) trailer() metadata.MD { return st.stream.Trailer() }

func (st *Stream) step(req *katov1.StreamObservationsRequest) (*katov1.StreamObservationsResponse, error) {
	if err := st.stream.Send(req); err != nil {
		_, err = st.stream.Recv() // Send reports only io.EOF; the status comes from Recv
		return nil, st.fail(err)
	}
	answer, err := st.stream.Recv()
	if err != nil {
		return nil, st.fail(err)
	}
	if e := answer.GetError(); e != nil {
		return nil, StatusError(e)
	}
	return answer, nil
}

// Observe sends one observation and returns the server's ObserveResponse.
func (st *Stream) Observe(obs *katov1.Observation) (*katov1.ObserveResponse, error) {
	answer, err := st.step(&katov1.StreamObservationsRequest{Step: &katov1.StreamObservationsRequest_Observation{Observation: obs}})
	return answer.GetObserved(), err
}

// Learn learns the short-term memory; see calls.Learn.
func (st *Stream) Learn() (string, error) {
	answer, err := st.step(&katov1.StreamObservationsRequest{Step: &katov1.StreamObservationsRequest_Learn{Learn: &katov1.StreamLearn{}}})
	return answer.GetLearned().GetPatternName(), err
}

// ClearStm clears the short-term memory.
func (st *Stream) ClearStm() error {
	_, err := st.step(&katov1.StreamObservationsRequest{Step: &katov1.StreamObservationsRequest_ClearStm{ClearStm: &katov1.StreamClearStm{}}})
	return err
}

// Close half-closes the stream and waits for its end; a client-held
// session's state becomes the stream's final state.
func (st *Stream) Close() error {
	defer st.cancel()
	if err := st.stream.CloseSend(); err != nil {
		return st.fail(err)
	}
	for {
		answer, err := st.stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return st.fail(err)
		}
		if closed := answer.GetClosed(); closed != nil {
			st.s.keep(closed.GetState())
			continue
		}
		return fmt.Errorf("kato: unexpected stream answer after close: %v", answer)
	}
}

// ListPatterns yields every pattern of the knowledge base in name order,
// fetching pageSize at a time (0: the server's default) as the loop asks for
// more. Each page is its own call, retried on its own. A failure is yielded
// once, as the error, and ends the loop.
func (c *Client) ListPatterns(ctx context.Context, kbID string, pageSize int32) iter.Seq2[*katov1.Pattern, error] {
	return func(yield func(*katov1.Pattern, error) bool) {
		token := ""
		for {
			page, err := c.Raw.ListPatterns(ctx, &katov1.ListPatternsRequest{KbId: kbID, PageSize: pageSize, PageToken: token})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, p := range page.GetPatterns() {
				if !yield(p, nil) {
					return
				}
			}
			if token = page.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}

// ListKnowledgeBases yields every knowledge base holding a pattern, in kb_id
// order, fetched pageSize at a time; as ListPatterns.
func (c *Client) ListKnowledgeBases(ctx context.Context, pageSize int32) iter.Seq2[*katov1.KnowledgeBase, error] {
	return func(yield func(*katov1.KnowledgeBase, error) bool) {
		token := ""
		for {
			page, err := c.Raw.ListKnowledgeBases(ctx, &katov1.ListKnowledgeBasesRequest{PageSize: pageSize, PageToken: token})
			if err != nil {
				yield(nil, err)
				return
			}
			for _, kb := range page.GetKnowledgeBases() {
				if !yield(kb, nil) {
					return
				}
			}
			if token = page.GetNextPageToken(); token == "" {
				return
			}
		}
	}
}
