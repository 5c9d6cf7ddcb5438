// Package eventhub delivers audit records to an event hub over the Kafka
// protocol, which Azure Event Hubs speaks (and so does any Kafka cluster).
// Each message is Azure's envelope, {"records":[...]}, holding several
// records in their wire form (destination.Wire), as Azure Monitor streams
// diagnostic logs; messages go to the event hub (topic) the setting names,
// or to insights-logs-<category> when it names none, as Azure creates one
// hub per category. Messages carry no key (Azure does not use compacted
// hubs), so the client spreads them over partitions.
//
// The producer does not ask for idempotent writes: Event Hubs' Kafka
// endpoint does not grant producer ids. A retried produce can therefore
// duplicate a message; with redelivery after a crash, consumers see
// records at least once and deduplicate by logId.
package eventhub

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"

	"github.com/tandemdata/tandem/internal/audit"
	"github.com/tandemdata/tandem/internal/audit/destination"
)

// MaxMessageBytes bounds one message: Event Hubs (Standard) accepts at
// most 1 MB per event.
const MaxMessageBytes = 1000 * 1000

// Config is where and how to connect.
type Config struct {
	// Brokers are host:port addresses (<namespace>.servicebus.windows.net:9093).
	Brokers []string
	// Topic is the event hub; empty means one per category.
	Topic string
	// ConnectionString, if set, authenticates with SASL PLAIN as Event
	// Hubs expects (user $ConnectionString). It is a secret.
	ConnectionString string
	// TLS dials with TLS (required by Event Hubs).
	TLS bool
	// RootCAs, if set, replaces the system roots (tests).
	TLSConfig *tls.Config
}

// ErrBadConfig marks configuration errors found without connecting.
var ErrBadConfig = errors.New("bad event hub configuration")

// Validate checks the configuration without connecting.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return fmt.Errorf("%w: bootstrap_servers is empty", ErrBadConfig)
	}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" || port == "" {
			return fmt.Errorf("%w: %q is not host:port", ErrBadConfig, b)
		}
	}
	if c.Topic != "" && !validTopic(c.Topic) {
		return fmt.Errorf("%w: %q is not a valid event hub name (letters, digits, '.', '_', '-', at most 249)", ErrBadConfig, c.Topic)
	}
	return nil
}

func validTopic(t string) bool {
	if len(t) == 0 || len(t) > 249 || t == "." || t == ".." {
		return false
	}
	return strings.IndexFunc(t, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}) < 0
}

// Destination produces records to an event hub.
type Destination struct {
	cfg    Config
	client *kgo.Client // nil after a failure: the next batch starts afresh
}

func (c Config) opts() []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.DisableIdempotentWrite(),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchMaxBytes(MaxMessageBytes + 64<<10),
		kgo.ProducerLinger(0),
		kgo.AllowAutoTopicCreation(),
		kgo.DialTimeout(5 * time.Second),
		// A batch that cannot be delivered fails within this bound, so the
		// delivery loop reports the outage and retries with a new client.
		kgo.RecordDeliveryTimeout(10 * time.Second),
	}
	if c.ConnectionString != "" {
		opts = append(opts, kgo.SASL(plain.Auth{User: "$ConnectionString", Pass: c.ConnectionString}.AsMechanism()))
	}
	if c.TLS {
		tc := c.TLSConfig
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	return opts
}

// New returns a destination; it connects lazily.
func New(cfg Config) (*Destination, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(cfg.opts()...)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	return &Destination{cfg: cfg, client: cl}, nil
}

// Check connects to the brokers (and authenticates) within ctx, for
// diagnostic settings to refuse an address or credentials that do not work.
func Check(ctx context.Context, cfg Config) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	cl, err := kgo.NewClient(append(cfg.opts(), kgo.RequestRetries(0))...)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrBadConfig, err)
	}
	defer cl.Close()
	if err := cl.Ping(ctx); err != nil {
		return fmt.Errorf("cannot reach the event hub at %s: %v", strings.Join(cfg.Brokers, ","), scrubErr(err, cfg.ConnectionString))
	}
	return nil
}

// scrubErr keeps a connection string out of an error's text.
func scrubErr(err error, secret string) string {
	s := err.Error()
	if secret != "" {
		s = strings.ReplaceAll(s, secret, audit.Redacted)
	}
	return s
}

// Close closes the client.
func (d *Destination) Close() {
	if d.client != nil {
		d.client.Close()
		d.client = nil
	}
}

// Topic is the event hub records of category go to.
func (d *Destination) Topic(category string) string {
	if d.cfg.Topic != "" {
		return d.cfg.Topic
	}
	return destination.Container(category)
}

// Deliver produces the batch and waits until every message is acknowledged.
func (d *Destination) Deliver(ctx context.Context, recs []*audit.Record, _ time.Time) error {
	byTopic := map[string][][]byte{}
	for _, r := range recs {
		line, err := destination.Wire(r)
		if err != nil {
			return fmt.Errorf("encode audit record %s: %w", r.Properties.LogID, err)
		}
		t := d.Topic(r.Category)
		byTopic[t] = append(byTopic[t], line)
	}
	topics := make([]string, 0, len(byTopic))
	for t := range byTopic {
		topics = append(topics, t)
	}
	sort.Strings(topics)
	var msgs []*kgo.Record
	for _, t := range topics {
		for _, body := range Envelopes(byTopic[t], MaxMessageBytes) {
			msgs = append(msgs, &kgo.Record{Topic: t, Value: body})
		}
	}
	if d.client == nil {
		cl, err := kgo.NewClient(d.cfg.opts()...)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadConfig, err)
		}
		d.client = cl
	}
	if err := d.client.ProduceSync(ctx, msgs...).FirstErr(); err != nil {
		// A client that failed may hold stale metadata (a hub that was
		// re-created has new topic ids): the retry uses a fresh one.
		d.Close()
		return fmt.Errorf("produce to event hub: %s", scrubErr(err, d.cfg.ConnectionString))
	}
	return nil
}

// Envelopes packs wire records into {"records":[...]} bodies of at most
// limit bytes each (a record larger than limit alone goes in a body of its
// own, for the hub to accept or refuse).
func Envelopes(lines [][]byte, limit int) [][]byte {
	const head, tail = `{"records":[`, `]}`
	var out [][]byte
	var cur []byte
	for _, l := range lines {
		if cur != nil && len(cur)+1+len(l)+len(tail) > limit {
			out = append(out, append(cur, tail...))
			cur = nil
		}
		if cur == nil {
			cur = append(make([]byte, 0, min(limit, len(head)+len(l)+len(tail)+4096)), head...)
		} else {
			cur = append(cur, ',')
		}
		cur = append(cur, l...)
	}
	if cur != nil {
		out = append(out, append(cur, tail...))
	}
	return out
}

// Decode reads an envelope back into records (tests and tools).
func Decode(body []byte) ([]*audit.Record, error) {
	var env struct {
		Records []json.RawMessage `json:"records"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	out := make([]*audit.Record, 0, len(env.Records))
	for _, raw := range env.Records {
		r, err := destination.FromWire(raw)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}
