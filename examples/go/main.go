// Command browserbroker-go-example drives the browser-session broker over gRPC:
// it acquires a lease, runs browser steps under a deadline, releases the lease
// (twice, to show that Release is idempotent) and shows the error contract.
// Every line it prints is one JSON object; it exits 1 when the broker did not
// answer as the scenario expects.
//
//	go run . -addr localhost:50051 -url https://example.com/ [scenario]
//
// With TLS: -cacert (the CA of the broker's certificate), and for mutual TLS
// -cert and -key (this client's certificate); -token sends the tenant's bearer
// token as "authorization: Bearer ..." metadata on every call.
//
// Scenarios:
//
//	cycle          Acquire; Run goto, get_text, evaluate; Run with a wrong token
//	               (PERMISSION_DENIED); Release; Release again (released_now=false)
//	deadline       Acquire; Run goto -url with the -timeout deadline, expecting
//	               DEADLINE_EXCEEDED; Run evaluate on the same lease; Release
//	release-twice  Acquire; Release; Release
//	wrong-token    Acquire; Run and Release with a wrong token; Release
//	login          Acquire; Run goto -url (a sign-in form: #user, #password,
//	               #submit), fill -user and -password, submit, wait for
//	               -selector and read it, storage_state; Release; Acquire a
//	               second lease that starts from that storage state; Run goto
//	               the page the first lease ended on, read -selector (it must
//	               read the same: still signed in); Release
//
// The calls carry W3C trace context (the traceparent header) through the
// OpenTelemetry gRPC instrumentation, so the broker's spans join the trace whose
// id is printed first.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	brokerv1 "example.com/browserbroker/gen/browserbroker/v1"
)

var (
	addr     = flag.String("addr", "localhost:50051", "broker address, host:port")
	pageURL  = flag.String("url", "https://example.com/", "page to open")
	selector = flag.String("selector", "h1", "element whose text to read")
	expr     = flag.String("eval", "document.title", "JavaScript expression to evaluate")
	timeout  = flag.Duration("timeout", 30*time.Second, "deadline of each Run")
	caCert   = flag.String("cacert", "", "PEM file of the CA that signed the broker's certificate (enables TLS)")
	certFile = flag.String("cert", "", "PEM file of this client's certificate, for mutual TLS")
	keyFile  = flag.String("key", "", "PEM file of this client's private key, for mutual TLS")
	token    = flag.String("token", "", "the tenant's bearer token")
	user     = flag.String("user", "ada", "login: the user name to sign in with")
	password = flag.String("password", "secret", "login: the password to sign in with")
)

// failed is set when the broker answered other than the scenario expects.
var failed bool

func main() {
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: browserbroker-go-example [flags] [cycle|deadline|release-twice|wrong-token]")
		flag.PrintDefaults()
	}
	flag.Parse()
	scenario := flag.Arg(0)
	if scenario == "" {
		scenario = "cycle"
	}
	if !strings.Contains(" cycle deadline release-twice wrong-token login ", " "+scenario+" ") || flag.NArg() > 1 {
		flag.Usage()
		os.Exit(2)
	}

	// A tracer provider without an exporter still creates real span and trace
	// ids; add an OTLP exporter (go.opentelemetry.io/otel/exporters/otlp/...)
	// to send this side of the trace to a collector as well.
	tp := sdktrace.NewTracerProvider()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.TraceContext{})
	defer func() { _ = tp.Shutdown(context.Background()) }()

	transport, err := transportCredentials()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	options := []grpc.DialOption{
		grpc.WithTransportCredentials(transport),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler()),
	}
	if *token != "" {
		options = append(options, grpc.WithPerRPCCredentials(bearer{*token, *caCert != ""}))
	}
	conn, err := grpc.NewClient(*addr, options...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer conn.Close()
	b := brokerv1.NewBrowserBrokerServiceClient(conn)

	ctx, span := tp.Tracer("browserbroker-go-example").Start(context.Background(), "example "+scenario)
	emit("trace", map[string]any{"trace_id": span.SpanContext().TraceID().String()})

	switch scenario {
	case "cycle":
		cycle(ctx, b)
	case "deadline":
		deadline(ctx, b)
	case "release-twice":
		if lease := acquire(ctx, b); lease != nil {
			releaseTwice(ctx, b, lease)
		}
	case "wrong-token":
		wrongToken(ctx, b)
	case "login":
		login(ctx, b)
	}
	span.End()
	emit("done", map[string]any{"ok": !failed})
	if failed {
		os.Exit(1)
	}
}

// transportCredentials is plaintext without -cacert, else TLS (mutual with -cert and -key).
func transportCredentials() (credentials.TransportCredentials, error) {
	if *caCert == "" {
		return insecure.NewCredentials(), nil
	}
	pem, err := os.ReadFile(*caCert)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", *caCert)
	}
	config := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	if *certFile != "" || *keyFile != "" {
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return nil, err
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return credentials.NewTLS(config), nil
}

// bearer sends the tenant's token with every call.
type bearer struct {
	token  string
	secure bool
}

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

// RequireTransportSecurity is false only so that the example also works on a
// plaintext loopback broker; over a network, use TLS.
func (b bearer) RequireTransportSecurity() bool { return b.secure }

func cycle(ctx context.Context, b brokerv1.BrowserBrokerServiceClient) {
	lease := acquire(ctx, b)
	if lease == nil {
		return
	}
	expect("Run", run(ctx, b, lease.GetLeaseId(), lease.GetToken(), *timeout,
		gotoStep(*pageURL), getTextStep(*selector), evaluateStep(*expr)), codes.OK)
	expect("Run", run(ctx, b, lease.GetLeaseId(), "wrong-token", *timeout, evaluateStep("1")),
		codes.PermissionDenied)
	releaseTwice(ctx, b, lease)
}

func deadline(ctx context.Context, b brokerv1.BrowserBrokerServiceClient) {
	lease := acquire(ctx, b)
	if lease == nil {
		return
	}
	// The broker stops the navigation in the browser when the deadline passes
	// and, with the default on_cancel (ON_CANCEL_KEEP_LEASE), keeps the lease
	// with a fresh page, so the next Run works.
	expect("Run", run(ctx, b, lease.GetLeaseId(), lease.GetToken(), *timeout, gotoStep(*pageURL)),
		codes.DeadlineExceeded)
	expect("Run", run(ctx, b, lease.GetLeaseId(), lease.GetToken(), 30*time.Second, evaluateStep(*expr)),
		codes.OK)
	release(ctx, b, lease.GetLeaseId(), lease.GetToken())
}

func wrongToken(ctx context.Context, b brokerv1.BrowserBrokerServiceClient) {
	lease := acquire(ctx, b)
	if lease == nil {
		return
	}
	expect("Run", run(ctx, b, lease.GetLeaseId(), "wrong-token", *timeout, evaluateStep("1")),
		codes.PermissionDenied)
	_, err := release(ctx, b, lease.GetLeaseId(), "wrong-token")
	expect("Release", err, codes.PermissionDenied)
	release(ctx, b, lease.GetLeaseId(), lease.GetToken())
}

// releaseTwice shows that Release is idempotent: the second call answers OK
// with released_now=false and the reason of the first.
func releaseTwice(ctx context.Context, b brokerv1.BrowserBrokerServiceClient, lease *brokerv1.AcquireResponse) {
	first, err1 := release(ctx, b, lease.GetLeaseId(), lease.GetToken())
	second, err2 := release(ctx, b, lease.GetLeaseId(), lease.GetToken())
	if err1 != nil || err2 != nil || !first.GetReleasedNow() || second.GetReleasedNow() ||
		first.GetReason() != second.GetReason() {
		failed = true
	}
}

// login signs in through a form in one lease, keeps its storage state (cookies
// and local storage, as Playwright's JSON) and starts a second lease from it.
func login(ctx context.Context, b brokerv1.BrowserBrokerServiceClient) {
	first := acquire(ctx, b)
	if first == nil {
		return
	}
	results, err := runCollect(ctx, b, first.GetLeaseId(), first.GetToken(), *timeout,
		gotoStep(*pageURL),
		&brokerv1.Step{Action: &brokerv1.Step_Fill{Fill: &brokerv1.Fill{Selector: "#user", Value: *user}}},
		&brokerv1.Step{Action: &brokerv1.Step_Fill{Fill: &brokerv1.Fill{Selector: "#password", Value: *password}}},
		&brokerv1.Step{Action: &brokerv1.Step_Click{Click: &brokerv1.Click{Selector: "#submit"}}},
		&brokerv1.Step{Action: &brokerv1.Step_WaitForSelector{WaitForSelector: &brokerv1.WaitForSelector{Selector: *selector}}},
		getTextStep(*selector),
		&brokerv1.Step{Action: &brokerv1.Step_StorageState{StorageState: &brokerv1.StorageState{}}})
	expect("Run", err, codes.OK)
	release(ctx, b, first.GetLeaseId(), first.GetToken())
	if err != nil || len(results) != 7 || failed {
		failed = true
		return
	}
	signedIn, state := results[5], results[6].GetData()
	var parsed struct {
		Cookies []struct{ Name string } `json:"cookies"`
	}
	names := []string{}
	if json.Unmarshal(state, &parsed) == nil {
		for _, c := range parsed.Cookies {
			names = append(names, c.Name)
		}
	}
	emit("state", map[string]any{"bytes": len(state), "cookies": names})

	second := acquireWith(ctx, b, &brokerv1.AcquireRequest{
		Context: &brokerv1.ContextOptions{StorageState: state},
		Labels:  map[string]string{"client": "go-example"},
	})
	if second == nil {
		return
	}
	again, err := runCollect(ctx, b, second.GetLeaseId(), second.GetToken(), *timeout,
		gotoStep(signedIn.GetUrl()), getTextStep(*selector))
	expect("Run", err, codes.OK)
	if err == nil && (len(again) != 2 || again[1].GetText() != signedIn.GetText()) {
		failed = true
	}
	if err == nil && len(again) == 2 {
		emit("signed_in", map[string]any{"text": again[1].GetText(), "same": again[1].GetText() == signedIn.GetText()})
	}
	release(ctx, b, second.GetLeaseId(), second.GetToken())
}

func acquire(ctx context.Context, b brokerv1.BrowserBrokerServiceClient) *brokerv1.AcquireResponse {
	return acquireWith(ctx, b, &brokerv1.AcquireRequest{Labels: map[string]string{"client": "go-example"}})
}

func acquireWith(ctx context.Context, b brokerv1.BrowserBrokerServiceClient, req *brokerv1.AcquireRequest) *brokerv1.AcquireResponse {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second) // bounds the wait in the broker's queue
	defer cancel()
	resp, err := b.Acquire(ctx, req)
	if err != nil {
		expect("Acquire", err, codes.OK)
		return nil
	}
	emit("Acquire", map[string]any{"code": "OK", "lease_id": resp.GetLeaseId(),
		"engine": resp.GetEngine().String(), "warm": resp.GetWarm()})
	return resp
}

// run streams one line per step result and returns the call's final error.
func run(ctx context.Context, b brokerv1.BrowserBrokerServiceClient, leaseID, token string,
	timeout time.Duration, steps ...*brokerv1.Step) error {
	_, err := runCollect(ctx, b, leaseID, token, timeout, steps...)
	return err
}

// runCollect is run that also returns the step results.
func runCollect(ctx context.Context, b brokerv1.BrowserBrokerServiceClient, leaseID, token string,
	timeout time.Duration, steps ...*brokerv1.Step) ([]*brokerv1.StepResult, error) {
	var results []*brokerv1.StepResult
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	stream, err := b.Run(ctx, &brokerv1.RunRequest{LeaseId: leaseID, Token: token, Steps: steps})
	if err != nil {
		return results, err
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return results, nil
		}
		if err != nil {
			return results, err
		}
		s := resp.GetStep()
		results = append(results, s)
		emit("step", map[string]any{"index": s.GetIndex(), "action": s.GetAction(), "ok": s.GetOk(),
			"error": s.GetError().GetMessage(), "url": s.GetUrl(), "http_status": s.GetHttpStatus(),
			"text": s.GetText(), "json": s.GetJson()})
		if !s.GetOk() {
			failed = true
		}
	}
}

func release(ctx context.Context, b brokerv1.BrowserBrokerServiceClient, leaseID, token string) (*brokerv1.ReleaseResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := b.Release(ctx, &brokerv1.ReleaseRequest{LeaseId: leaseID, Token: token})
	if err != nil {
		if token == "wrong-token" {
			return nil, err // the caller checks the code
		}
		expect("Release", err, codes.OK)
		return nil, err
	}
	emit("Release", map[string]any{"code": "OK", "released_now": resp.GetReleasedNow(),
		"reason": resp.GetReason().String()})
	return resp, nil
}

// expect prints the outcome of a call as its status code name (e.g.
// "DEADLINE_EXCEEDED") and records a failure when it is not the wanted one.
func expect(rpc string, err error, want codes.Code) {
	st := status.Convert(err) // nil error: OK
	fields := map[string]any{"code": code.Code(st.Code()).String()}
	if err != nil {
		fields["message"] = st.Message()
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				fields["reason"] = info.GetReason()
			}
		}
	}
	if st.Code() != want {
		fields["expected"] = code.Code(want).String()
		failed = true
	}
	emit(rpc, fields)
}

// emit prints one JSON line: {"event":EVENT,FIELDS...} (fields in key order).
func emit(event string, fields map[string]any) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(fields)
	rest := strings.TrimPrefix(strings.TrimSpace(body.String()), "{")
	if rest != "}" {
		rest = "," + rest
	}
	fmt.Printf("{\"event\":%q%s\n", event, rest)
}

func gotoStep(url string) *brokerv1.Step {
	return &brokerv1.Step{Action: &brokerv1.Step_Goto{Goto: &brokerv1.Goto{Url: url}}}
}

func getTextStep(selector string) *brokerv1.Step {
	return &brokerv1.Step{Action: &brokerv1.Step_GetText{GetText: &brokerv1.GetText{Selector: selector}}}
}

func evaluateStep(expression string) *brokerv1.Step {
	return &brokerv1.Step{Action: &brokerv1.Step_Evaluate{Evaluate: &brokerv1.Evaluate{Expression: expression}}}
}
