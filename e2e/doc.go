// Package e2e holds Tandem's end-to-end tests with real Apache Spark. They
// are built only with the "spark" tag and run by `make test-spark`, a
// bounded group apart from the Go unit and integration tests.
package e2e
