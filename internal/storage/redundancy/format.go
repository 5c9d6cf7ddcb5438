package redundancy

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/tandemdata/tandem/internal/storage"
)

// The trailer each copy stores after the object:
//
//	SHA-256 of each block (32 each) | size (8) | generation (8) |
//	SHA-256 of the above (32) | "TRD1"
const (
	trailerMagic = "TRD1"
	trailerFixed = 8 + 8 + 32 + 4
)

type trailer struct {
	blocks [][32]byte
	size   int64
	gen    uint64
	sum    [32]byte
}

func blockCount(size, block int64) int64 { return (size + block - 1) / block }

// payloadSize is the object size of a copy's stored size.
func payloadSize(stored, block int64) (int64, bool) {
	s := stored - trailerFixed
	if s < 0 {
		return 0, false
	}
	nb := (s + block + 32 - 1) / (block + 32)
	p := s - 32*nb
	if p < 0 || blockCount(p, block) != nb {
		return 0, false
	}
	return p, true
}

func (t *trailer) encode() []byte {
	b := make([]byte, 0, len(t.blocks)*32+trailerFixed)
	for _, h := range t.blocks {
		b = append(b, h[:]...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(t.size))
	b = binary.BigEndian.AppendUint64(b, t.gen)
	t.sum = sha256.Sum256(b)
	b = append(b, t.sum[:]...)
	return append(b, trailerMagic...)
}

func decodeTrailer(b []byte, size, block int64) (*trailer, error) {
	nb := blockCount(size, block)
	if int64(len(b)) != nb*32+trailerFixed || string(b[len(b)-4:]) != trailerMagic {
		return nil, fmt.Errorf("bad trailer: %w", storage.ErrCorrupt)
	}
	body := b[:len(b)-36]
	sum := sha256.Sum256(body)
	if !bytes.Equal(sum[:], b[len(b)-36:len(b)-4]) {
		return nil, fmt.Errorf("trailer checksum mismatch: %w", storage.ErrCorrupt)
	}
	t := &trailer{sum: sum}
	for i := int64(0); i < nb; i++ {
		var h [32]byte
		copy(h[:], body[i*32:])
		t.blocks = append(t.blocks, h)
	}
	t.size = int64(binary.BigEndian.Uint64(body[nb*32:]))
	t.gen = binary.BigEndian.Uint64(body[nb*32+8:])
	if t.size != size {
		return nil, fmt.Errorf("trailer size %d, stored %d: %w", t.size, size, storage.ErrCorrupt)
	}
	return t, nil
}
