package digest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strings"
)

// Problem is something Verify found wrong.
type Problem struct {
	// Kind is "missing-file", "altered-file", "missing-digest",
	// "altered-digest", "bad-signature", "chain-broken" or "unreadable".
	Kind   string `json:"kind"`
	Object string `json:"object"`
	Detail string `json:"detail"`
}

func (p Problem) String() string { return fmt.Sprintf("%s: %s: %s", p.Kind, p.Object, p.Detail) }

// ChainReport is what Verify found for one chain.
type ChainReport struct {
	Name    string `json:"name"`
	Digests int    `json:"digests"`
	// Files is the number of distinct log files the chain covers.
	Files int `json:"files"`
	// First and Last are the start of the first digest and the end of the
	// last: records delivered after Last are not sealed yet.
	First string `json:"first"`
	Last  string `json:"last"`
}

// Report is the outcome of Verify.
type Report struct {
	Chains   []ChainReport `json:"chains"`
	Problems []Problem     `json:"problems"`
	// Unsealed are log files no digest covers yet (written in the current
	// period) or files whose tail was written after the last digest.
	Unsealed []string `json:"unsealed"`
}

// OK reports whether nothing is missing or altered.
func (r Report) OK() bool { return len(r.Problems) == 0 }

// Verify checks every digest chain in a storage account laid out as the
// digest package writes it (fsys is the account's root). Each digest must
// carry a valid signature by pub, name the previous digest of its chain by
// hash and signature, and each log file it lists must still start with the
// bytes it hashed. If pub is nil, the keys published in the account are
// used, which detects accidents but not someone who could also replace
// the published key; pass the region's exported public key to rule that out.
func Verify(fsys fs.FS, pub ed25519.PublicKey) (Report, error) {
	var rep Report
	ents, err := fs.ReadDir(fsys, strings.TrimSuffix(Root, "/"))
	if errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("no %s folder: this storage account holds no audit digests", Root)
	}
	if err != nil {
		return rep, err
	}
	keys := map[string]ed25519.PublicKey{}
	if pub != nil {
		keys[Fingerprint(pub)] = pub
	} else {
		pems, _ := fs.ReadDir(fsys, Root+"public-keys")
		for _, e := range pems {
			b, err := fs.ReadFile(fsys, Root+"public-keys/"+e.Name())
			if err != nil {
				continue
			}
			if k, err := ParsePublicKey(b); err == nil {
				keys[Fingerprint(k)] = k
			}
		}
	}
	covered := map[string]int64{} // log file -> largest sealed size
	for _, e := range ents {
		if !e.IsDir() || e.Name() == "public-keys" {
			continue
		}
		cr := verifyChain(fsys, e.Name(), keys, covered, &rep)
		rep.Chains = append(rep.Chains, cr)
	}
	// Files no digest covers, or that grew after the last one.
	roots, _ := fs.ReadDir(fsys, ".")
	for _, r := range roots {
		if !r.IsDir() || !strings.HasPrefix(r.Name(), "insights-logs-") {
			continue
		}
		fs.WalkDir(fsys, r.Name(), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return nil
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			if size, ok := covered[p]; !ok || info.Size() > size {
				rep.Unsealed = append(rep.Unsealed, p)
			}
			return nil
		})
	}
	sort.Strings(rep.Unsealed)
	return rep, nil
}

func verifyChain(fsys fs.FS, chain string, keys map[string]ed25519.PublicKey, covered map[string]int64, rep *Report) ChainReport {
	cr := ChainReport{Name: chain}
	var digests []string
	fs.WalkDir(fsys, Root+chain, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") {
			digests = append(digests, p)
		}
		return nil
	})
	// Names end with the period's end time and the folders are y/m/d of
	// it, so name order is time order.
	sort.Strings(digests)
	files := map[string]bool{}
	var prevObject, prevSHA, prevSig, prevEnd string
	problem := func(kind, object, format string, args ...any) {
		rep.Problems = append(rep.Problems, Problem{Kind: kind, Object: object, Detail: fmt.Sprintf(format, args...)})
	}
	for i, object := range digests {
		raw, err := fs.ReadFile(fsys, object)
		if err != nil {
			problem("unreadable", object, "%v", err)
			continue
		}
		var f File
		var body Body
		if err := json.Unmarshal(raw, &f); err != nil || json.Unmarshal(f.Digest, &body) != nil {
			problem("altered-digest", object, "not a digest file")
			prevObject = ""
			continue
		}
		sig, _ := base64.StdEncoding.DecodeString(f.Signature)
		key, known := keys[body.PublicKeyFingerprint]
		switch {
		case !known:
			problem("bad-signature", object, "signed by key %s, which is not the key given", short(body.PublicKeyFingerprint))
		case !ed25519.Verify(key, signedMessage(object, f.Digest), sig):
			problem("bad-signature", object, "the signature does not match the digest's content and name")
		}
		cr.Digests++
		if i == 0 {
			cr.First = body.StartTime
			if body.Previous != nil {
				// The chain's earlier digests are gone: report the first
				// one the survivor names.
				problem("missing-digest", body.Previous.Object, "named as previous by %s but not found", object)
			}
		} else {
			switch {
			case body.Previous == nil:
				problem("chain-broken", object, "starts a new chain after %s", prevObject)
			case body.Previous.Object != prevObject:
				problem("missing-digest", body.Previous.Object, "named as previous by %s but not found (the digest before it is %s)", object, prevObject)
			case body.Previous.SHA256 != prevSHA:
				problem("altered-digest", prevObject, "its SHA-256 is not the one %s recorded", object)
			case body.Previous.Signature != prevSig:
				problem("altered-digest", prevObject, "its signature is not the one %s recorded", object)
			}
			if body.Previous != nil && body.Previous.Object == prevObject && body.StartTime != prevEnd {
				problem("chain-broken", object, "starts at %s but the previous digest ends at %s", body.StartTime, prevEnd)
			}
		}
		for _, lf := range body.LogFiles {
			files[lf.Object] = true
			if lf.Size > covered[lf.Object] {
				covered[lf.Object] = lf.Size
			}
			checkLogFile(fsys, object, lf, problem)
		}
		sum := sha256.Sum256(raw)
		prevObject, prevSHA, prevSig, prevEnd = object, hex.EncodeToString(sum[:]), f.Signature, body.EndTime
		cr.Last = body.EndTime
	}
	cr.Files = len(files)
	return cr
}

func checkLogFile(fsys fs.FS, digest string, lf LogFile, problem func(kind, object, format string, args ...any)) {
	f, err := fsys.Open(lf.Object)
	if errors.Is(err, fs.ErrNotExist) {
		problem("missing-file", lf.Object, "listed by %s but not found", digest)
		return
	}
	if err != nil {
		problem("unreadable", lf.Object, "%v", err)
		return
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.CopyN(h, f, lf.Size)
	if err != nil && !errors.Is(err, io.EOF) {
		problem("unreadable", lf.Object, "%v", err)
		return
	}
	if n < lf.Size {
		problem("altered-file", lf.Object, "is %d bytes, shorter than the %d bytes %s sealed", n, lf.Size, digest)
		return
	}
	if hex.EncodeToString(h.Sum(nil)) != lf.SHA256 {
		problem("altered-file", lf.Object, "its first %d bytes do not match the SHA-256 sealed by %s", lf.Size, digest)
	}
}

func short(s string) string {
	if len(s) > 12 {
		return s[:12]
	}
	return s
}
