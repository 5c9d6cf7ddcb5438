// Package digest makes delivered audit files tamper-evident, beyond what
// Azure Databricks offers (CloudTrail's log file validation is the model).
// At the end of every period (an hour by default) a destination writes a
// digest file listing each log file it wrote to during the period with the
// SHA-256 of its contents, and the SHA-256 and signature of the previous
// digest; the digest is signed with the region's Ed25519 key. Deleting,
// replacing or editing a log file or a digest breaks a hash, a signature or
// the chain, and Verify names what is missing or altered.
//
// Log files are append-only (Azure's append blobs: PT1H.json grows during
// its hour), so a digest records each file's size at sealing time and the
// hash of that prefix. A later digest lists the file again if it grew;
// every entry stays checkable, because appending never changes a prefix.
//
// Layout in the storage account (see docs/audit.md):
//
//	tandem-digests/<chain>/y=YYYY/m=MM/d=DD/<end>.json   one digest per period
//	tandem-digests/public-keys/<fingerprint>.pem           the region's public key
//
// where <chain> names the destination (setting name and id) and <end> the
// period's end, 20060102T150405Z, so names sort in time order.
package digest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"time"

	"github.com/tandemdata/tandem/internal/atomicfile"
	"github.com/tandemdata/tandem/internal/storage"
)

// Root is the top folder of digests in a storage account.
const Root = "tandem-digests/"

// Version is the digest format version.
const Version = "1"

// Algorithm names the signature algorithm in digests.
const Algorithm = "Ed25519"

// signingDomain prefixes every signed message, so a digest signature can
// never be mistaken for a signature of anything else.
const signingDomain = "tandem-audit-digest-v1\n"

// Body is the signed content of a digest.
type Body struct {
	Version              string    `json:"version"`
	Chain                string    `json:"chain"`
	ResourceID           string    `json:"resource_id"`
	Region               string    `json:"region"`
	StartTime            string    `json:"digest_start_time"`
	EndTime              string    `json:"digest_end_time"`
	PublicKeyFingerprint string    `json:"public_key_fingerprint"`
	SignatureAlgorithm   string    `json:"signature_algorithm"`
	Previous             *Previous `json:"previous_digest"`
	LogFiles             []LogFile `json:"log_files"`
}

// Previous links a digest to the one before it in its chain.
type Previous struct {
	Object    string `json:"object"`
	SHA256    string `json:"sha256"`
	Signature string `json:"signature"`
}

// LogFile is one log file as it was when the digest was sealed.
type LogFile struct {
	Object string `json:"object"`
	Size   int64  `json:"size"`
	// SHA256 is the hash of the file's first Size bytes.
	SHA256 string `json:"sha256"`
}

// File is a stored digest: the body's exact bytes and their signature.
type File struct {
	Digest    json.RawMessage `json:"digest"`
	Signature string          `json:"signature"`
}

// signedMessage binds the body to the object name it is stored under, so a
// digest moved to another place does not verify.
func signedMessage(object string, body []byte) []byte {
	m := make([]byte, 0, len(signingDomain)+len(object)+1+len(body))
	m = append(m, signingDomain...)
	m = append(m, object...)
	m = append(m, '\n')
	return append(m, body...)
}

// TimeLayout is the layout of digest times and names.
const (
	TimeLayout = time.RFC3339
	nameLayout = "20060102T150405Z"
)

// ObjectName is where a chain's digest for a period ending at end goes.
func ObjectName(chain string, end time.Time) string {
	end = end.UTC()
	return fmt.Sprintf("%s%s/y=%04d/m=%02d/d=%02d/%s.json", Root, chain, end.Year(), end.Month(), end.Day(), end.Format(nameLayout))
}

// Account is what a chain needs of the storage account.
type Account interface {
	Put(ctx context.Context, name string, r io.Reader) error
	Get(ctx context.Context, name string, offset, length int64) (io.ReadCloser, error)
	Stat(ctx context.Context, name string) (storage.ObjectInfo, error)
}

// Chain seals the files one destination writes.
type Chain struct {
	// Name is the chain's folder under Root.
	Name       string
	Account    Account
	Key        *Key
	ResourceID string
	Region     string
	// Period is how often a digest is sealed (an hour in production).
	Period time.Duration
	// StateFile keeps the chain's head and the files written since the
	// last digest, so a restart continues the chain.
	StateFile string

	st     *state
	keyPut bool
}

type state struct {
	LastEnd       time.Time       `json:"last_end"`
	LastObject    string          `json:"last_object,omitempty"`
	LastSHA256    string          `json:"last_sha256,omitempty"`
	LastSignature string          `json:"last_signature,omitempty"`
	Pending       map[string]bool `json:"pending"`
}

func (c *Chain) load(now time.Time) error {
	if c.st != nil {
		return nil
	}
	var st state
	b, err := os.ReadFile(c.StateFile)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// A new chain starts at the current period; nothing before it was
		// written by this destination.
		st.LastEnd = now.UTC().Truncate(c.Period)
	case err != nil:
		return fmt.Errorf("read digest state: %w", err)
	default:
		if err := json.Unmarshal(b, &st); err != nil {
			return fmt.Errorf("digest state %s is damaged: %w", c.StateFile, err)
		}
	}
	if st.Pending == nil {
		st.Pending = map[string]bool{}
	}
	c.st = &st
	if errors.Is(err, os.ErrNotExist) {
		return c.save()
	}
	return nil
}

func (c *Chain) save() error {
	b, err := json.Marshal(c.st)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(c.StateFile, b, 0o600); err != nil {
		return fmt.Errorf("save digest state: %w", err)
	}
	return nil
}

// Touch records, durably, that name is about to be written, so the next
// digest lists it even if the server crashes in between.
func (c *Chain) Touch(name string, now time.Time) error {
	if err := c.load(now); err != nil {
		return err
	}
	if c.st.Pending[name] {
		return nil
	}
	c.st.Pending[name] = true
	if err := c.save(); err != nil {
		delete(c.st.Pending, name)
		return err
	}
	return nil
}

// Pending lists the files written since the last digest.
func (c *Chain) Pending(now time.Time) ([]string, error) {
	if err := c.load(now); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(c.st.Pending))
	for n := range c.st.Pending {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Due reports whether a period has ended since the last digest.
func (c *Chain) Due(now time.Time) (bool, error) {
	if err := c.load(now); err != nil {
		return false, err
	}
	return !now.Before(c.st.LastEnd.Add(c.Period)), nil
}

// Seal writes the digest of every period that ended by now (one digest
// covering them all after a long stop, since no file changed while the
// server was down). It does nothing if no period has ended.
func (c *Chain) Seal(ctx context.Context, now time.Time) error {
	due, err := c.Due(now)
	if err != nil || !due {
		return err
	}
	if err := c.publishKey(ctx); err != nil {
		return err
	}
	end := now.UTC().Truncate(c.Period)
	body := Body{
		Version: Version, Chain: c.Name, ResourceID: c.ResourceID, Region: c.Region,
		StartTime: c.st.LastEnd.UTC().Format(TimeLayout), EndTime: end.Format(TimeLayout),
		PublicKeyFingerprint: c.Key.Fingerprint(), SignatureAlgorithm: Algorithm,
		LogFiles: []LogFile{},
	}
	if c.st.LastObject != "" {
		body.Previous = &Previous{Object: c.st.LastObject, SHA256: c.st.LastSHA256, Signature: c.st.LastSignature}
	}
	names, _ := c.Pending(now)
	for _, name := range names {
		lf, ok, err := hashObject(ctx, c.Account, name)
		if err != nil {
			return err
		}
		if ok {
			body.LogFiles = append(body.LogFiles, lf)
		}
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	object := ObjectName(c.Name, end)
	sig := c.Key.sign(signedMessage(object, raw))
	file, err := json.Marshal(File{Digest: raw, Signature: base64.StdEncoding.EncodeToString(sig)})
	if err != nil {
		return err
	}
	file = append(file, '\n')
	if err := c.Account.Put(ctx, object, bytes.NewReader(file)); err != nil {
		return fmt.Errorf("write digest %s: %w", object, err)
	}
	sum := sha256.Sum256(file)
	next := state{LastEnd: end, LastObject: object, LastSHA256: hex.EncodeToString(sum[:]),
		LastSignature: base64.StdEncoding.EncodeToString(sig), Pending: map[string]bool{}}
	prev := c.st
	c.st = &next
	if err := c.save(); err != nil {
		// The digest is written but the head is not stored: the next try
		// rewrites the same period's digest with the same predecessor.
		c.st = prev
		return err
	}
	return nil
}

// publishKey stores the region's public key in the account, once, so a
// reader of the account finds which key signed the digests.
func (c *Chain) publishKey(ctx context.Context) error {
	if c.keyPut {
		return nil
	}
	name := Root + "public-keys/" + c.Key.Fingerprint() + ".pem"
	if _, err := c.Account.Stat(ctx, name); err != nil {
		pub, err := c.Key.PublicPEM()
		if err != nil {
			return err
		}
		if err := c.Account.Put(ctx, name, bytes.NewReader(pub)); err != nil {
			return fmt.Errorf("publish digest public key: %w", err)
		}
	}
	c.keyPut = true
	return nil
}

func hashObject(ctx context.Context, a Account, name string) (LogFile, bool, error) {
	info, err := a.Stat(ctx, name)
	if errors.Is(err, storage.ErrNotFound) {
		return LogFile{}, false, nil
	}
	if err != nil {
		return LogFile{}, false, fmt.Errorf("digest %s: %w", name, err)
	}
	r, err := a.Get(ctx, name, 0, info.Size)
	if err != nil {
		return LogFile{}, false, fmt.Errorf("digest %s: %w", name, err)
	}
	defer r.Close()
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return LogFile{}, false, fmt.Errorf("digest %s: %w", name, err)
	}
	return LogFile{Object: name, Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, true, nil
}
