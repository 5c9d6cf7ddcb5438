package workspace

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSourceRoundTripKeepsCellsAndMagics(t *testing.T) {
	src := "# Databricks notebook source\nprint(1)\n\n# COMMAND ----------\n\n# MAGIC %md\n# MAGIC # Title\n# MAGIC\n# MAGIC text\n\n# COMMAND ----------\n\nx = 2\n"
	cells := ParseSource([]byte(src), Python)
	want := []Cell{{Source: "print(1)"}, {Source: "%md\n# Title\n\ntext", Markdown: true}, {Source: "x = 2"}}
	if diff := cmp.Diff(want, cells); diff != "" {
		t.Fatalf("ParseSource (-want +got):\n%s", diff)
	}
	if got := string(RenderSource(cells, Python)); got != src {
		t.Errorf("RenderSource:\n%q\nwant\n%q", got, src)
	}
	sql := RenderSource([]Cell{{Source: "select 1"}, {Source: "%python\nprint(2)"}}, SQL)
	if !strings.HasPrefix(string(sql), "-- Databricks notebook source\n") || !strings.Contains(string(sql), "-- MAGIC %python") {
		t.Errorf("SQL rendering: %q", sql)
	}
}

func TestJupyterRoundTrip(t *testing.T) {
	cells := []Cell{{Source: "import os\nprint(os.getcwd())"}, {Source: "%md\n## Notes", Markdown: true}}
	nb, err := RenderJupyter(cells, Python, "nb")
	if err != nil {
		t.Fatal(err)
	}
	back, lang, err := ParseJupyter(nb)
	if err != nil || lang != Python {
		t.Fatalf("ParseJupyter: %v %s", err, lang)
	}
	if diff := cmp.Diff(cells, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	if _, _, err := ParseJupyter([]byte(`{"cells": 5}`)); err == nil {
		t.Error("accepted a broken notebook")
	}
	if _, lang, _ := ParseJupyter([]byte(`{"cells":[],"metadata":{"kernelspec":{"language":"scala"}}}`)); lang != Scala {
		t.Errorf("kernelspec language = %s", lang)
	}
}

func TestDecideImport(t *testing.T) {
	header := []byte("# Databricks notebook source\nprint(1)\n")
	ipynb, _ := RenderJupyter([]Cell{{Source: "print(1)"}}, Python, "x")
	cases := []struct {
		name, path, format, lang string
		content                  []byte
		wantPath, wantType       string
		wantLang, err            string
	}{
		{"source with language", "/a/nb", "SOURCE", "PYTHON", []byte("print(1)"), "/a/nb", Notebook, Python, ""},
		{"source language from extension", "/a/nb.sql", "SOURCE", "", []byte("select 1"), "/a/nb.sql", Notebook, SQL, ""},
		{"source without a language", "/a/nb", "SOURCE", "", []byte("x"), "", "", "", "language is required"},
		{"auto notebook strips extension", "/a/nb.py", "AUTO", "", header, "/a/nb", Notebook, Python, ""},
		{"auto R notebook", "/a/nb.r", "AUTO", "", header, "/a/nb", Notebook, R, ""},
		{"auto plain python is a file", "/a/lib.py", "AUTO", "", []byte("def f(): pass\n"), "/a/lib.py", File, "", ""},
		{"auto ipynb", "/a/x.ipynb", "AUTO", "", ipynb, "/a/x", Notebook, Python, ""},
		{"jupyter", "/a/x.ipynb", "JUPYTER", "", ipynb, "/a/x", Notebook, Python, ""},
		{"broken jupyter", "/a/x.ipynb", "JUPYTER", "", []byte("{"), "", "", "", "Could not import"},
		{"raw file", "/a/data.csv", "RAW", "", []byte("a,b"), "/a/data.csv", File, "", ""},
		{"dbc refused", "/a/x.dbc", "DBC", "", nil, "", "", "", "not supported"},
		{"bad language", "/a/x", "SOURCE", "COBOL", nil, "", "", "", "Unknown language"},
		{"bad format", "/a/x", "ZIP", "", nil, "", "", "", "Unknown import format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o, stored, err := decideImport(c.path, c.format, c.lang, c.content)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.Path != c.wantPath || o.ObjectType != c.wantType || o.Language != c.wantLang {
				t.Fatalf("decided %+v", o)
			}
			if o.ObjectType == Notebook && detectSource(stored) == "" {
				t.Errorf("notebook stored without its SOURCE header: %q", stored)
			}
		})
	}
}
