// Command conformance replays conformance vectors (tests/conformance/vectors)
// against a live KATO gRPC server through the Go stubs, with client-held
// sessions, and prints `N passed, N failed`. It exits non-zero when a case
// fails.
//
// The cases run are those listed in cases.txt (embedded; -cases overrides it),
// one `file_stem::case_id` per line. -all runs every case whose operations this
// replayer supports instead. The vector format and the matchers are defined by
// tests/conformance/README.md and tests/conformance/matchers.py.
//
//	go run ./cmd/conformance -target 127.0.0.1:50051 -vectors ../../tests/conformance/vectors
package main

import (
	"bufio"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	katov1 "github.com/kato-grpc/kato-grpc/clients/go/katov1"
)

//go:embed cases.txt
var defaultCases string

// supportedOps are the operations the adapter implements (README §3).
var supportedOps = map[string]bool{
	"observe": true, "learn": true, "clear_stm": true, "clear_all": true, "stm": true,
	"predictions": true, "get_pattern": true, "configure": true, "get_config": true,
	"create_session": true,
}

// skippedTags are the tags -all leaves out: transports, timings and engine
// features (vector neighbours, Python repr) this replayer does not assert.
var skippedTags = map[string]bool{
	"vectors": true, "vector-neighbours": true, "http-only": true, "timing": true,
	"load": true, "slow": true, "python-repr": true,
}

// objectResultOps are the operations whose plain-object expect is a partial match.
var objectResultOps = map[string]bool{
	"observe": true, "observe_sequence": true, "get_config": true, "percept_data": true,
	"cognition_data": true, "session_info": true, "session_exists": true, "extend_session": true,
	"create_session": true, "delete_session": true,
}

type testCase struct {
	File   string           `json:"-"`
	ID     string           `json:"id"`
	Tags   []string         `json:"tags"`
	Config map[string]any   `json:"config"`
	Steps  []map[string]any `json:"steps"`
}

func (c *testCase) key() string { return c.File + "::" + c.ID }

func (c *testCase) supported() bool {
	for _, t := range c.Tags {
		if skippedTags[t] {
			return false
		}
	}
	for _, s := range c.Steps {
		op, _ := s["op"].(string)
		if !supportedOps[op] {
			return false
		}
		if _, raw := s["raw"]; raw && op == "create_session" {
			return false
		}
	}
	return true
}

func loadCases(dir string) (map[string]*testCase, []string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, nil, err
	}
	if len(paths) == 0 {
		return nil, nil, fmt.Errorf("no *.json vectors in %s", dir)
	}
	sort.Strings(paths)
	cases := map[string]*testCase{}
	var order []string
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, nil, err
		}
		var file struct {
			FormatVersion int         `json:"format_version"`
			Cases         []*testCase `json:"cases"`
		}
		if err := json.Unmarshal(data, &file); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if file.FormatVersion != 0 && file.FormatVersion != 1 {
			return nil, nil, fmt.Errorf("%s: unsupported format_version %d", path, file.FormatVersion)
		}
		stem := strings.TrimSuffix(filepath.Base(path), ".json")
		for _, c := range file.Cases {
			c.File = stem
			cases[c.key()] = c
			order = append(order, c.key())
		}
	}
	return cases, order, nil
}

func readList(text string) []string {
	var keys []string
	scanner := bufio.NewScanner(strings.NewReader(text))
	for scanner.Scan() {
		line := strings.TrimSpace(scanner.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			keys = append(keys, line)
		}
	}
	return keys
}

// stmSnapshot is the session's STM, or the kind of its rejection.
func stmSnapshot(a *adapter, alias string) any {
	stm, err := a.stm(alias)
	var refused *rejected
	if errors.As(err, &refused) {
		return "rejected:" + refused.kind
	}
	if err != nil {
		return "error:" + err.Error()
	}
	return stm
}

func checkExpect(op string, result, expect any, sc scope) error {
	if op == "predictions" {
		assertions, ok := expect.([]any)
		if !ok {
			return fmt.Errorf("predictions.expect must be a list of assertions, got %s", short(expect))
		}
		for i, assertion := range assertions {
			if err := checkPredictions(result, assertion, sc, "$"); err != nil {
				return fmt.Errorf("assertion %d %s: %w", i, short(assertion), err)
			}
		}
		return nil
	}
	if _, isObject := expect.(map[string]any); isObject && objectResultOps[op] && !isOperatorObject(expect) {
		return checkObject(result, expect, sc, "$")
	}
	return check(result, expect, sc, "$")
}

func runStep(a *adapter, step map[string]any, labels map[string]any) error {
	op, _ := step["op"].(string)
	alias := "main"
	if s, ok := step["session"].(string); ok {
		alias = s
	}
	expectError, hasExpectError := step["expect_error"].(string)
	allowError, _ := step["allow_error"].(bool)
	call := map[string]any{}
	for k, v := range step {
		call[k] = v
	}
	if ref, ok := step["name_ref"]; ok && op == "get_pattern" {
		name, err := resolveLabel(labels, ref)
		if err != nil {
			return err
		}
		call["name"] = name
	}
	watch := hasExpectError || allowError
	var before any
	if watch {
		before = stmSnapshot(a, alias)
	}
	result, err := a.run(op, alias, call)
	var refused *rejected
	if errors.As(err, &refused) {
		if !hasExpectError && !allowError {
			return fmt.Errorf("rejected unexpectedly: %v", refused)
		}
		if hasExpectError && expectError != "any" && refused.kind != expectError {
			return fmt.Errorf("expected a %q rejection, got %v", expectError, refused)
		}
		if after := stmSnapshot(a, alias); !jsonEqual(before, after) {
			return fmt.Errorf("the rejected operation changed the session's STM: %s -> %s", short(before), short(after))
		}
		if label, ok := step["save_as"].(string); ok {
			labels[label] = nil
		}
		return nil
	}
	if err != nil {
		return err // a crash (transport error, unsupported step): the case fails
	}
	if hasExpectError {
		return fmt.Errorf("expected a %q rejection, but the operation returned %s", expectError, short(result))
	}
	if expect, ok := step["expect"]; ok {
		if err := checkExpect(op, result, expect, scope{labels: labels}); err != nil {
			return err
		}
	}
	if label, ok := step["save_as"].(string); ok {
		labels[label] = result
	}
	return nil
}

func runCase(c *testCase, a *adapter) error {
	labels := map[string]any{}
	config := c.Config
	if config == nil {
		config = map[string]any{}
	}
	setup := map[string]any{"op": "create_session", "session": "main", "node": "main", "config": config}
	if _, err := a.run("create_session", "main", setup); err != nil {
		return fmt.Errorf("creating the initial session with config %s: %w", short(config), err)
	}
	for i, step := range c.Steps {
		if err := runStep(a, step, labels); err != nil {
			session := "main"
			if s, ok := step["session"].(string); ok {
				session = s
			}
			return fmt.Errorf("step %d (%v, session %q): %w", i, step["op"], session, err)
		}
	}
	return nil
}

func main() {
	target := flag.String("target", "127.0.0.1:50051", "the server address, host:port")
	vectors := flag.String("vectors", "../../tests/conformance/vectors", "the directory of the *.json vectors")
	casesFile := flag.String("cases", "", "a `file` listing the cases to run, one file_stem::case_id a line (default: the embedded cases.txt)")
	all := flag.Bool("all", false, "run every case whose operations are supported instead of the list")
	verbose := flag.Bool("v", false, "print every case, not only failures")
	timeout := flag.Duration("timeout", 30*time.Second, "the deadline of each call")
	flag.Parse()

	cases, order, err := loadCases(*vectors)
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
	var selected []string
	switch {
	case *all:
		for _, key := range order {
			if cases[key].supported() {
				selected = append(selected, key)
			}
		}
	case *casesFile != "":
		data, err := os.ReadFile(*casesFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "conformance:", err)
			os.Exit(2)
		}
		selected = readList(string(data))
	default:
		selected = readList(defaultCases)
	}

	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
	defer conn.Close()
	client := katov1.NewKatoServiceClient(conn)

	run := make([]byte, 4)
	_, _ = rand.Read(run)
	runID := "go-" + hex.EncodeToString(run)

	passed, failed := 0, 0
	for i, key := range selected {
		c, ok := cases[key]
		if !ok {
			failed++
			fmt.Printf("FAIL %s: no such case in %s\n", key, *vectors)
			continue
		}
		err := runCase(c, newAdapter(client, fmt.Sprintf("%s-%d", runID, i), *timeout))
		if err != nil {
			failed++
			fmt.Printf("FAIL %s: %v\n", key, err)
			continue
		}
		passed++
		if *verbose {
			fmt.Printf("ok   %s\n", key)
		}
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 || passed == 0 {
		os.Exit(1)
	}
}
