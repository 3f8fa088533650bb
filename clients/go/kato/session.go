package kato

import (
	"context"

	"google.golang.org/protobuf/types/known/structpb"

	katov1 "github.com/kato-grpc/kato-grpc/clients/go/katov1"
)

// Strings is an observation of plain symbols.
func Strings(symbols ...string) *katov1.Observation {
	return &katov1.Observation{Strings: symbols}
}

// calls are the session RPCs, shared by client-held and server-held
// sessions: exactly one of state and id is set.
type calls struct {
	c     *Client
	state *katov1.SessionState
	id    string
}

// keep threads a client-held state: the state a response returns replaces ours.
func (s *calls) keep(state *katov1.SessionState) {
	if s.id == "" && state != nil {
		s.state = state
	}
}

// Observe observes one event. The request_id is set unless given in opts.
func (s *calls) Observe(ctx context.Context, obs *katov1.Observation, opts ...ObserveOption) (*katov1.ObserveResponse, error) {
	req := &katov1.ObserveRequest{Observation: obs}
	for _, opt := range opts {
		opt(req)
	}
	if s.id != "" {
		req.Session = &katov1.ObserveRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.ObserveRequest_State{State: s.state}
	}
	r, err := s.c.Raw.Observe(ctx, req)
	if err == nil {
		s.keep(r.GetState())
	}
	return r, err
}

// ObserveOption sets an optional field of an ObserveRequest.
type ObserveOption func(*katov1.ObserveRequest)

// ReturnPredictions asks Observe for the predictions it computed.
func ReturnPredictions() ObserveOption {
	return func(r *katov1.ObserveRequest) { r.ReturnPredictions = true }
}

// WithObserveRequestID sets the request_id (default: a fresh UUID4).
func WithObserveRequestID(id string) ObserveOption {
	return func(r *katov1.ObserveRequest) { r.RequestId = id }
}

// ObserveSequence observes req.Observations atomically; the session fields of
// req are filled in here.
func (s *calls) ObserveSequence(ctx context.Context, req *katov1.ObserveSequenceRequest) (*katov1.ObserveSequenceResponse, error) {
	if s.id != "" {
		req.Session = &katov1.ObserveSequenceRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.ObserveSequenceRequest_State{State: s.state}
	}
	r, err := s.c.Raw.ObserveSequence(ctx, req)
	if err == nil {
		s.keep(r.GetState())
	}
	return r, err
}

// Learn learns the short-term memory; the name is "PTRN|<sha1>", or "" when
// fewer than 2 symbols were held and nothing was stored.
func (s *calls) Learn(ctx context.Context) (string, error) {
	req := &katov1.LearnRequest{}
	if s.id != "" {
		req.Session = &katov1.LearnRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.LearnRequest_State{State: s.state}
	}
	r, err := s.c.Raw.Learn(ctx, req)
	if err != nil {
		return "", err
	}
	s.keep(r.GetState())
	return r.GetPatternName(), nil
}

// Predict predicts from the short-term memory; it changes nothing.
func (s *calls) Predict(ctx context.Context) (*katov1.PredictResponse, error) {
	req := &katov1.PredictRequest{}
	if s.id != "" {
		req.Session = &katov1.PredictRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.PredictRequest_State{State: s.state}
	}
	return s.c.Raw.Predict(ctx, req)
}

// ClearStm clears the short-term memory (not the knowledge base).
func (s *calls) ClearStm(ctx context.Context) error {
	req := &katov1.ClearStmRequest{}
	if s.id != "" {
		req.Session = &katov1.ClearStmRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.ClearStmRequest_State{State: s.state}
	}
	r, err := s.c.Raw.ClearStm(ctx, req)
	if err == nil {
		s.keep(r.GetState())
	}
	return err
}

// ClearAll clears the short-term memory and the session's knowledge base.
func (s *calls) ClearAll(ctx context.Context) error {
	req := &katov1.ClearAllRequest{}
	if s.id != "" {
		req.Session = &katov1.ClearAllRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.ClearAllRequest_State{State: s.state}
	}
	r, err := s.c.Raw.ClearAll(ctx, req)
	if err == nil {
		s.keep(r.GetState())
	}
	return err
}

// Stm is the short-term memory, oldest event first, as symbol lists.
func (s *calls) Stm(ctx context.Context) ([][]string, error) {
	req := &katov1.GetStmRequest{}
	if s.id != "" {
		req.Session = &katov1.GetStmRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.GetStmRequest_State{State: s.state}
	}
	r, err := s.c.Raw.GetStm(ctx, req)
	if err != nil {
		return nil, err
	}
	out := make([][]string, len(r.GetStm()))
	for i, e := range r.GetStm() {
		out[i] = e.GetSymbols()
	}
	return out, nil
}

// Cognition is what the last Observe computed, with the STM and time.
func (s *calls) Cognition(ctx context.Context) (*katov1.GetCognitionDataResponse, error) {
	req := &katov1.GetCognitionDataRequest{}
	if s.id != "" {
		req.Session = &katov1.GetCognitionDataRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.GetCognitionDataRequest_State{State: s.state}
	}
	return s.c.Raw.GetCognitionData(ctx, req)
}

// Config is the effective configuration.
func (s *calls) Config(ctx context.Context) (*katov1.SessionConfig, error) {
	req := &katov1.GetConfigRequest{}
	if s.id != "" {
		req.Session = &katov1.GetConfigRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.GetConfigRequest_State{State: s.state}
	}
	r, err := s.c.Raw.GetConfig(ctx, req)
	return r.GetConfig(), err
}

// Configure changes the keys set in config (all or nothing) and returns the
// effective configuration.
func (s *calls) Configure(ctx context.Context, config *katov1.SessionConfig) (*katov1.SessionConfig, error) {
	req := &katov1.UpdateConfigRequest{Config: config}
	if s.id != "" {
		req.Session = &katov1.UpdateConfigRequest_SessionId{SessionId: s.id}
	} else {
		req.Session = &katov1.UpdateConfigRequest_State{State: s.state}
	}
	r, err := s.c.Raw.UpdateConfig(ctx, req)
	if err != nil {
		return nil, err
	}
	s.keep(r.GetState())
	return r.GetConfig(), nil
}

// Session is a client-held session: every call sends State and keeps the
// state the response returns. Calls on one Session are sequential by nature
// (each needs the last one's state): do not share it between goroutines.
type Session struct{ calls }

// Session starts a client-held session on knowledge base kbID.
func (c *Client) Session(kbID string) *Session {
	return &Session{calls{c: c, state: &katov1.SessionState{KbId: kbID}}}
}

// ResumeSession continues a client-held session from a saved state.
func (c *Client) ResumeSession(state *katov1.SessionState) *Session {
	return &Session{calls{c: c, state: state}}
}

// State is the current state: save it (proto.Marshal) to resume later.
func (s *Session) State() *katov1.SessionState { return s.state }

// ServerSession is a server-held session: calls carry only its id.
type ServerSession struct {
	calls
	// Info is the session as CreateSession (or the last Get) returned it.
	Info *katov1.Session
}

// SessionOptions are the optional fields of CreateSession.
type SessionOptions struct {
	Config     *katov1.SessionConfig
	TTLSeconds int32 // 0: the server's default (3600)
	Metadata   map[string]any
}

// CreateSession creates a server-held session on knowledge base kbID.
func (c *Client) CreateSession(ctx context.Context, kbID string, opts *SessionOptions) (*ServerSession, error) {
	req := &katov1.CreateSessionRequest{KbId: kbID}
	if opts != nil {
		req.Config = opts.Config
		if opts.TTLSeconds != 0 {
			req.TtlSeconds = &opts.TTLSeconds
		}
		if opts.Metadata != nil {
			m, err := structpb.NewStruct(opts.Metadata)
			if err != nil {
				return nil, err
			}
			req.Metadata = m
		}
	}
	r, err := c.Raw.CreateSession(ctx, req)
	if err != nil {
		return nil, err
	}
	return &ServerSession{calls: calls{c: c, id: r.GetSession().GetSessionId()}, Info: r.GetSession()}, nil
}

// ServerSession is a handle on an existing server-held session.
func (c *Client) ServerSession(id string) *ServerSession {
	return &ServerSession{calls: calls{c: c, id: id}}
}

// ID is the session id.
func (s *ServerSession) ID() string { return s.id }

// Get reads the session (and slides its expiry).
func (s *ServerSession) Get(ctx context.Context) (*katov1.Session, error) {
	r, err := s.c.Raw.GetSession(ctx, &katov1.GetSessionRequest{SessionId: s.id})
	if err != nil {
		return nil, err
	}
	s.Info = r.GetSession()
	return s.Info, nil
}

// Extend sets the time to live and restarts the expiry from now.
func (s *ServerSession) Extend(ctx context.Context, ttlSeconds int32) (*katov1.Session, error) {
	r, err := s.c.Raw.ExtendSession(ctx, &katov1.ExtendSessionRequest{SessionId: s.id, TtlSeconds: ttlSeconds})
	return r.GetSession(), err
}

// Delete deletes the session (the knowledge base stays).
func (s *ServerSession) Delete(ctx context.Context) error {
	_, err := s.c.Raw.DeleteSession(ctx, &katov1.DeleteSessionRequest{SessionId: s.id})
	return err
}

// Configure changes the keys set in config (UpdateSessionConfig).
func (s *ServerSession) Configure(ctx context.Context, config *katov1.SessionConfig) (*katov1.SessionConfig, error) {
	r, err := s.c.Raw.UpdateSessionConfig(ctx, &katov1.UpdateSessionConfigRequest{SessionId: s.id, Config: config})
	return r.GetConfig(), err
}
