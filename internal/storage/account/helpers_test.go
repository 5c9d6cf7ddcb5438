package account

import (
	"encoding/base64"

	"github.com/tandemdata/tandem/internal/storage/redundancy"
)

func base64Std(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

var _ = redundancy.Copy{}
