package main

// The adapter from the vectors' operations (tests/conformance README §3) to the
// gRPC API, with client-held sessions: each session alias owns a
// katov1.SessionState that travels with every call and is replaced by the one
// each response returns. A node alias maps to a knowledge-base id under a
// prefix unique to the case, so cases sharing one server never meet.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	katov1 "github.com/kato-grpc/kato-grpc/clients/go/katov1"
)

// rejected is an operation the engine refused; kind is "validation",
// "not_found" or "other" (README §3 expect_error).
type rejected struct {
	kind string
	msg  string
}

func (r *rejected) Error() string { return r.kind + ": " + r.msg }

// errUnsupported marks a step this replayer cannot run (a case-selection error).
var errUnsupported = errors.New("unsupported")

const defaultTTL = 3600

type adapter struct {
	client   katov1.KatoServiceClient
	timeout  time.Duration
	prefix   string
	sessions map[string]*katov1.SessionState
	anon     int
}

func newAdapter(client katov1.KatoServiceClient, prefix string, timeout time.Duration) *adapter {
	return &adapter{client: client, timeout: timeout, prefix: prefix, sessions: map[string]*katov1.SessionState{}}
}

func (a *adapter) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.timeout)
}

// rejection maps a gRPC status to a rejection kind; a server or transport
// failure (UNAVAILABLE, INTERNAL, ...) passes through and fails the case.
func rejection(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.ResourceExhausted:
		return &rejected{"validation", st.Message()}
	case codes.NotFound:
		return &rejected{"not_found", st.Message()}
	case codes.Unavailable, codes.DeadlineExceeded, codes.Internal, codes.Unknown:
		return err // the server failed: a crash, not a refusal
	}
	return &rejected{"other", st.Code().String() + ": " + st.Message()}
}

func (a *adapter) kbID(node any) string {
	name, ok := node.(string)
	if !ok || name == "" {
		a.anon++
		name = fmt.Sprintf("anon%d", a.anon)
	}
	var b strings.Builder
	for _, r := range name {
		if r < 128 && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_.:-", r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	safe := b.String()
	if len(safe) > 60 {
		safe = safe[:60]
	}
	return a.prefix + "-" + safe
}

func (a *adapter) session(alias string) (*katov1.SessionState, error) {
	state, ok := a.sessions[alias]
	if !ok {
		return nil, &rejected{"not_found", fmt.Sprintf("session %q does not exist", alias)}
	}
	return state, nil
}

// --- payloads -------------------------------------------------------------------

func stringList(v any, what string) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	l, ok := v.([]any)
	if !ok {
		return nil, &rejected{"validation", fmt.Sprintf("%s: %s is not a list of strings", what, short(v))}
	}
	out := make([]string, len(l))
	for i, e := range l {
		s, ok := e.(string)
		if !ok {
			return nil, &rejected{"validation", fmt.Sprintf("%s: %s is not a list of strings", what, short(v))}
		}
		out[i] = s
	}
	return out, nil
}

// observation builds an Observation from a JSON payload, or rejects it as
// `validation` when the wire types cannot carry it (a null string, a string
// where a list goes), as any typed gRPC client would.
func observation(raw any) (*katov1.Observation, error) {
	payload, ok := raw.(map[string]any)
	if !ok {
		return nil, &rejected{"validation", "observation must be an object"}
	}
	obs := &katov1.Observation{}
	var err error
	if obs.Strings, err = stringList(payload["strings"], "strings"); err != nil {
		return nil, err
	}
	if v := payload["vectors"]; v != nil {
		vectors, ok := v.([]any)
		if !ok {
			return nil, &rejected{"validation", fmt.Sprintf("vectors: %s is not a list of number lists", short(v))}
		}
		for _, vector := range vectors {
			components, ok := vector.([]any)
			if !ok {
				return nil, &rejected{"validation", fmt.Sprintf("vectors: %s is not a list of number lists", short(v))}
			}
			values := make([]float64, len(components))
			for i, c := range components {
				if values[i], ok = c.(float64); !ok {
					return nil, &rejected{"validation", fmt.Sprintf("vectors: %s is not a list of number lists", short(v))}
				}
			}
			obs.Vectors = append(obs.Vectors, &katov1.Vector{Values: values})
		}
	}
	if v := payload["emotives"]; v != nil {
		emotives, ok := v.(map[string]any)
		if !ok {
			return nil, &rejected{"validation", fmt.Sprintf("emotives: %s is not a map of numbers", short(v))}
		}
		obs.Emotives = map[string]float64{}
		for k, e := range emotives {
			if obs.Emotives[k], ok = e.(float64); !ok {
				return nil, &rejected{"validation", fmt.Sprintf("emotives: %s is not a map of numbers", short(v))}
			}
		}
	}
	if v := payload["metadata"]; v != nil {
		metadata, ok := v.(map[string]any)
		if !ok {
			return nil, &rejected{"validation", "metadata must be an object"}
		}
		if len(metadata) > 0 {
			if obs.Metadata, err = structpb.NewStruct(metadata); err != nil {
				return nil, &rejected{"validation", "metadata: " + err.Error()}
			}
		}
	}
	if v := payload["unique_id"]; v != nil {
		if obs.UniqueId, ok = v.(string); !ok {
			return nil, &rejected{"validation", "unique_id must be a string"}
		}
	}
	return obs, nil
}

// sessionConfig builds a SessionConfig holding the given keys; unknown keys are
// ignored (README §3 configure) and values of the wrong JSON type rejected.
func sessionConfig(raw any) (*katov1.SessionConfig, error) {
	overrides, ok := raw.(map[string]any)
	if raw != nil && !ok {
		return nil, &rejected{"validation", fmt.Sprintf("config: %s must be an object", short(raw))}
	}
	config := &katov1.SessionConfig{}
	message := config.ProtoReflect()
	fields := message.Descriptor().Fields()
	for key, value := range overrides {
		fd := fields.ByName(protoreflect.Name(key))
		if fd == nil {
			continue
		}
		bad := &rejected{"validation", fmt.Sprintf("config.%s: %s has the wrong type", key, short(value))}
		if key == "affinity_emotive" && value == nil {
			continue
		}
		switch fd.Kind() {
		case protoreflect.MessageKind: // filter_pipeline
			values, err := stringList(value, "config."+key)
			if err != nil || value == nil {
				return nil, bad
			}
			config.FilterPipeline = &katov1.StringList{Values: values}
		case protoreflect.DoubleKind:
			f, ok := value.(float64)
			if !ok {
				return nil, bad
			}
			message.Set(fd, protoreflect.ValueOfFloat64(f))
		case protoreflect.Int32Kind:
			f, ok := value.(float64)
			if !ok || f != math.Trunc(f) || f < math.MinInt32 || f > math.MaxInt32 {
				return nil, bad
			}
			message.Set(fd, protoreflect.ValueOfInt32(int32(f)))
		case protoreflect.BoolKind:
			b, ok := value.(bool)
			if !ok {
				return nil, bad
			}
			message.Set(fd, protoreflect.ValueOfBool(b))
		case protoreflect.StringKind:
			s, ok := value.(string)
			if !ok {
				return nil, bad
			}
			message.Set(fd, protoreflect.ValueOfString(s))
		default:
			return nil, bad
		}
	}
	return config, nil
}

// --- results --------------------------------------------------------------------

func events(list []*katov1.Event) []any {
	out := make([]any, len(list))
	for i, e := range list {
		symbols := make([]any, len(e.GetSymbols()))
		for j, s := range e.GetSymbols() {
			symbols[j] = s
		}
		out[i] = symbols
	}
	return out
}

func strs(list []string) []any {
	out := make([]any, len(list))
	for i, s := range list {
		out[i] = s
	}
	return out
}

func floatMap(m map[string]float64) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func stringLists(m map[string]*katov1.StringList) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = strs(v.GetValues())
	}
	return out
}

func optional(v *float64) any {
	if v == nil {
		return nil
	}
	return *v
}

// prediction is a Prediction with the field names of SPEC.md §6.12 (the name
// bare, as the server sends it; unset weighted_* fields are null).
func prediction(p *katov1.Prediction) map[string]any {
	anomalies := make([]any, len(p.GetAnomalies()))
	for i, a := range p.GetAnomalies() {
		anomalies[i] = map[string]any{"observed": a.GetObserved(), "expected": a.GetExpected(), "similarity": a.GetSimilarity()}
	}
	return map[string]any{
		"type": p.GetType(), "name": p.GetName(), "frequency": float64(p.GetFrequency()),
		"emotives": floatMap(p.GetEmotives()), "metadata": stringLists(p.GetMetadata()),
		"sequence": events(p.GetSequence()), "matches": strs(p.GetMatches()),
		"past": events(p.GetPast()), "present": events(p.GetPresent()), "future": events(p.GetFuture()),
		"missing": events(p.GetMissing()), "extras": events(p.GetExtras()), "anomalies": anomalies,
		"similarity": p.GetSimilarity(), "evidence": p.GetEvidence(), "confidence": p.GetConfidence(),
		"snr": p.GetSnr(), "fragmentation": p.GetFragmentation(), "entropy": p.GetEntropy(),
		"normalized_entropy": p.GetNormalizedEntropy(), "global_normalized_entropy": p.GetGlobalNormalizedEntropy(),
		"itfdf_similarity": p.GetItfdfSimilarity(), "confluence": p.GetConfluence(), "tfidf_score": p.GetTfidfScore(),
		"pattern_probability": p.GetPatternProbability(), "weighted_strength": p.GetWeightedStrength(),
		"predictive_information": p.GetPredictiveInformation(), "bayesian_prior": p.GetBayesianPrior(),
		"bayesian_likelihood": p.GetBayesianLikelihood(), "bayesian_posterior": p.GetBayesianPosterior(),
		"potential":           p.GetPotential(),
		"weighted_similarity": optional(p.WeightedSimilarity), "weighted_evidence": optional(p.WeightedEvidence),
		"weighted_confidence": optional(p.WeightedConfidence), "weighted_snr": optional(p.WeightedSnr),
	}
}

// configMap is the effective configuration as GetConfig returns it: every key,
// affinity_emotive null when unset, filter_pipeline a list.
func configMap(c *katov1.SessionConfig) map[string]any {
	out := map[string]any{}
	message := c.ProtoReflect()
	fields := message.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if !message.Has(fd) {
			if fd.Name() == "affinity_emotive" {
				out["affinity_emotive"] = nil
			}
			continue
		}
		v := message.Get(fd)
		switch fd.Kind() {
		case protoreflect.MessageKind:
			out[string(fd.Name())] = strs(c.GetFilterPipeline().GetValues())
		case protoreflect.DoubleKind:
			out[string(fd.Name())] = v.Float()
		case protoreflect.Int32Kind:
			out[string(fd.Name())] = float64(v.Int())
		case protoreflect.BoolKind:
			out[string(fd.Name())] = v.Bool()
		case protoreflect.StringKind:
			s := v.String()
			if fd.Name() == "affinity_emotive" && s == "" {
				out[string(fd.Name())] = nil
			} else {
				out[string(fd.Name())] = s
			}
		}
	}
	return out
}

// --- operations -----------------------------------------------------------------

func (a *adapter) run(op, alias string, step map[string]any) (any, error) {
	switch op {
	case "create_session":
		return a.createSession(alias, step)
	case "observe":
		return a.observe(alias, step)
	case "learn":
		return a.learn(alias)
	case "clear_stm":
		return nil, a.update(alias, func(ctx context.Context, s *katov1.SessionState) (*katov1.SessionState, error) {
			r, err := a.client.ClearStm(ctx, &katov1.ClearStmRequest{Session: &katov1.ClearStmRequest_State{State: s}})
			return r.GetState(), err
		})
	case "clear_all":
		return nil, a.update(alias, func(ctx context.Context, s *katov1.SessionState) (*katov1.SessionState, error) {
			r, err := a.client.ClearAll(ctx, &katov1.ClearAllRequest{Session: &katov1.ClearAllRequest_State{State: s}})
			return r.GetState(), err
		})
	case "configure":
		config, err := sessionConfig(step["config"])
		if err != nil {
			return nil, err
		}
		return nil, a.update(alias, func(ctx context.Context, s *katov1.SessionState) (*katov1.SessionState, error) {
			r, err := a.client.UpdateConfig(ctx, &katov1.UpdateConfigRequest{
				Session: &katov1.UpdateConfigRequest_State{State: s}, Config: config})
			return r.GetState(), err
		})
	case "stm":
		return a.stm(alias)
	case "predictions":
		return a.predictions(alias)
	case "get_pattern":
		return a.getPattern(alias, step)
	case "get_config":
		return a.getConfig(alias)
	}
	return nil, fmt.Errorf("%w operation %q", errUnsupported, op)
}

// update runs a call that returns a new state and keeps that state.
func (a *adapter) update(alias string, call func(context.Context, *katov1.SessionState) (*katov1.SessionState, error)) error {
	state, err := a.session(alias)
	if err != nil {
		return err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	next, err := call(ctx, state)
	if err != nil {
		return rejection(err)
	}
	a.sessions[alias] = next
	return nil
}

func (a *adapter) createSession(alias string, step map[string]any) (any, error) {
	if _, ok := step["raw"]; ok {
		return nil, fmt.Errorf("%w: create_session with a raw payload", errUnsupported)
	}
	ttl := float64(defaultTTL)
	if v, ok := step["ttl_seconds"]; ok && v != nil {
		f, ok := v.(float64)
		if !ok || f != math.Trunc(f) || f < 1 || f > 2_592_000 {
			return nil, &rejected{"validation", fmt.Sprintf("ttl_seconds: %s out of range", short(v))}
		}
		ttl = f
	}
	metadata := map[string]any{}
	if v, ok := step["metadata"]; ok && v != nil {
		if metadata, ok = v.(map[string]any); !ok {
			return nil, &rejected{"validation", "metadata must be an object"}
		}
	}
	state := &katov1.SessionState{KbId: a.kbID(step["node"])}
	if overrides, _ := step["config"].(map[string]any); len(overrides) > 0 {
		config, err := sessionConfig(overrides)
		if err != nil {
			return nil, err
		}
		ctx, cancel := a.ctx()
		defer cancel()
		r, err := a.client.UpdateConfig(ctx, &katov1.UpdateConfigRequest{
			Session: &katov1.UpdateConfigRequest_State{State: state}, Config: config})
		if err != nil {
			return nil, rejection(err)
		}
		state = r.GetState()
	}
	a.sessions[alias] = state
	node, _ := step["node"].(string)
	var nodeID any
	if node != "" {
		nodeID = node
	}
	return map[string]any{"session_id": alias, "node_id": nodeID, "ttl_seconds": ttl, "metadata": metadata}, nil
}

func (a *adapter) observe(alias string, step map[string]any) (any, error) {
	raw, ok := step["raw"]
	if !ok {
		payload := map[string]any{}
		for _, k := range []string{"strings", "vectors", "emotives", "metadata", "unique_id"} {
			if v, ok := step[k]; ok {
				payload[k] = v
			}
		}
		raw = payload
	}
	obs, err := observation(raw)
	if err != nil {
		return nil, err
	}
	var response *katov1.ObserveResponse
	err = a.update(alias, func(ctx context.Context, s *katov1.SessionState) (*katov1.SessionState, error) {
		r, err := a.client.Observe(ctx, &katov1.ObserveRequest{
			Session: &katov1.ObserveRequest_State{State: s}, Observation: obs})
		response = r
		return r.GetState(), err
	})
	if err != nil {
		return nil, err
	}
	var learned any
	if name := response.GetAutoLearnedPattern(); name != "" {
		learned = name
	}
	return map[string]any{
		"status": "okay", "stm_length": float64(response.GetStmLength()), "time": float64(response.GetTime()),
		"unique_id": response.GetUniqueId(), "auto_learned_pattern": learned,
	}, nil
}

func (a *adapter) learn(alias string) (any, error) {
	state, err := a.session(alias)
	if err != nil {
		return nil, err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	r, err := a.client.Learn(ctx, &katov1.LearnRequest{Session: &katov1.LearnRequest_State{State: state}})
	if status.Code(err) == codes.FailedPrecondition {
		return "", nil // an empty STM learns nothing (README §3 learn)
	}
	if err != nil {
		return nil, rejection(err)
	}
	a.sessions[alias] = r.GetState()
	return r.GetPatternName(), nil
}

func (a *adapter) stm(alias string) (any, error) {
	state, err := a.session(alias)
	if err != nil {
		return nil, err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	r, err := a.client.GetStm(ctx, &katov1.GetStmRequest{Session: &katov1.GetStmRequest_State{State: state}})
	if err != nil {
		return nil, rejection(err)
	}
	return events(r.GetStm()), nil
}

func (a *adapter) predictions(alias string) (any, error) {
	state, err := a.session(alias)
	if err != nil {
		return nil, err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	r, err := a.client.Predict(ctx, &katov1.PredictRequest{Session: &katov1.PredictRequest_State{State: state}})
	if err != nil {
		return nil, rejection(err)
	}
	out := make([]any, len(r.GetPredictions()))
	for i, p := range r.GetPredictions() {
		out[i] = prediction(p)
	}
	return out, nil
}

func (a *adapter) getPattern(alias string, step map[string]any) (any, error) {
	state, err := a.session(alias)
	if err != nil {
		return nil, err
	}
	name, _ := step["name"].(string)
	if name == "" {
		return nil, nil
	}
	ctx, cancel := a.ctx()
	defer cancel()
	r, err := a.client.GetPattern(ctx, &katov1.GetPatternRequest{KbId: state.GetKbId(), Name: name})
	if status.Code(err) == codes.NotFound {
		return nil, nil
	}
	if err != nil {
		return nil, rejection(err)
	}
	p := r.GetPattern()
	emotives := make([]any, len(p.GetEmotives()))
	for i, e := range p.GetEmotives() {
		emotives[i] = floatMap(e.GetValues())
	}
	return map[string]any{
		"name": p.GetName(), "pattern_data": events(p.GetEvents()), "length": float64(p.GetLength()),
		"frequency": float64(p.GetFrequency()), "emotives": emotives, "metadata": stringLists(p.GetMetadata()),
	}, nil
}

func (a *adapter) getConfig(alias string) (any, error) {
	state, err := a.session(alias)
	if err != nil {
		return nil, err
	}
	ctx, cancel := a.ctx()
	defer cancel()
	r, err := a.client.GetConfig(ctx, &katov1.GetConfigRequest{Session: &katov1.GetConfigRequest_State{State: state}})
	if err != nil {
		return nil, rejection(err)
	}
	return configMap(r.GetConfig()), nil
}
