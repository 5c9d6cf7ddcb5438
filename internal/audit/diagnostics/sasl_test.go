package diagnostics_test

import (
	kgosasl "github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

type sasl = kgosasl.Mechanism

func plainMech() sasl {
	return plain.Auth{User: "$ConnectionString", Pass: hubSecret}.AsMechanism()
}
