package workspace

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSourceRoundTripKeepsCellsAndMagics(t *testing.T) {
	src := "# Databricks notebook source\nprint(1)\n\n# COMMAND ----------\n\n# MAGIC %md\n# MAGIC # Title\n# MAGIC\n# MAGIC text\n\n# COMMAND ----------\n\nx = 2"
	cells := ParseSource([]byte(src), Python)
	want := []Cell{{Source: "print(1)"}, {Source: "%md\n# Title\n\ntext", Markdown: true}, {Source: "x = 2"}}
	if diff := cmp.Diff(want, cells); diff != "" {
		t.Fatalf("ParseSource (-want +got):\n%s", diff)
	}
	if got := string(RenderSource(cells, Python)); got != src {
		t.Errorf("RenderSource:\n%q\nwant\n%q", got, src)
	}
}

// TestSourceFormatPerLanguage checks the header, separator and MAGIC
// comments of each language, both ways.
func TestSourceFormatPerLanguage(t *testing.T) {
	cells := []Cell{{Source: "a = 1"}, {Source: "%md\n# Notes", Markdown: true}, {Source: "%sh\nls\n\necho"}}
	cases := []struct {
		lang, want string
	}{
		{Python, "# Databricks notebook source\na = 1\n\n# COMMAND ----------\n\n# MAGIC %md\n# MAGIC # Notes\n\n# COMMAND ----------\n\n# MAGIC %sh\n# MAGIC ls\n# MAGIC\n# MAGIC echo"},
		{SQL, "-- Databricks notebook source\na = 1\n\n-- COMMAND ----------\n\n-- MAGIC %md\n-- MAGIC # Notes\n\n-- COMMAND ----------\n\n-- MAGIC %sh\n-- MAGIC ls\n-- MAGIC\n-- MAGIC echo"},
		{Scala, "// Databricks notebook source\na = 1\n\n// COMMAND ----------\n\n// MAGIC %md\n// MAGIC # Notes\n\n// COMMAND ----------\n\n// MAGIC %sh\n// MAGIC ls\n// MAGIC\n// MAGIC echo"},
		{R, "# Databricks notebook source\na = 1\n\n# COMMAND ----------\n\n# MAGIC %md\n# MAGIC # Notes\n\n# COMMAND ----------\n\n# MAGIC %sh\n# MAGIC ls\n# MAGIC\n# MAGIC echo"},
	}
	for _, c := range cases {
		t.Run(c.lang, func(t *testing.T) {
			got := string(RenderSource(cells, c.lang))
			if got != c.want {
				t.Fatalf("RenderSource:\n%q\nwant\n%q", got, c.want)
			}
			if diff := cmp.Diff(cells, ParseSource([]byte(got), c.lang)); diff != "" {
				t.Errorf("ParseSource (-want +got):\n%s", diff)
			}
		})
	}
}

// TestToSourceIsCanonical: notebooks are stored and exported in one form,
// as Databricks exports them (its SDKs' own tests upload "print(1)" and
// download "# Databricks notebook source\nprint(1)").
func TestToSourceIsCanonical(t *testing.T) {
	cases := []struct {
		name, lang, in, want string
	}{
		{"code without header", Python, "print(1)", "# Databricks notebook source\nprint(1)"},
		{"trailing newlines go", Python, "print(1)\n\n", "# Databricks notebook source\nprint(1)"},
		{"CRLF", Python, "# Databricks notebook source\r\nprint(1)\r\n", "# Databricks notebook source\nprint(1)"},
		{"byte order mark", SQL, "\ufeff-- Databricks notebook source\nselect 1", "-- Databricks notebook source\nselect 1"},
		{"blank lines around a cell", Python, "# Databricks notebook source\n\n\nx\n\n\n# COMMAND ----------\ny\n", "# Databricks notebook source\nx\n\n# COMMAND ----------\n\ny"},
		{"already canonical", Scala, "// Databricks notebook source\nval x = 1\n\n// COMMAND ----------\n\nx", "// Databricks notebook source\nval x = 1\n\n// COMMAND ----------\n\nx"},
		{"empty", R, "", "# Databricks notebook source\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := string(ToSource([]byte(c.in), c.lang))
			if got != c.want {
				t.Fatalf("ToSource(%q) =\n%q\nwant\n%q", c.in, got, c.want)
			}
			if again := string(ToSource([]byte(got), c.lang)); again != got {
				t.Errorf("not stable: %q became %q", got, again)
			}
		})
	}
}

func TestJupyterRoundTrip(t *testing.T) {
	cells := []Cell{
		{Source: "import os\nprint(os.getcwd())"},
		{Source: "%md\n## Notes", Markdown: true},
		{Source: "%md-sandbox\n<b>html</b>"},
		{Source: "%sql\nselect 1"},
	}
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
	// nbformat 4: code cells carry outputs and a null execution_count,
	// markdown cells neither.
	var doc struct {
		Cells []map[string]json.RawMessage `json:"cells"`
	}
	if err := json.Unmarshal(nb, &doc); err != nil {
		t.Fatal(err)
	}
	for i, c := range doc.Cells {
		_, hasOut := c["outputs"]
		ec, hasEC := c["execution_count"]
		code := string(c["cell_type"]) == `"code"`
		if code != (i != 1) {
			t.Errorf("cell %d is %s", i, c["cell_type"])
		}
		if code && (!hasOut || !hasEC || string(ec) != "null") || !code && (hasOut || hasEC) {
			t.Errorf("cell %d (%s): outputs %v, execution_count %s", i, c["cell_type"], hasOut, ec)
		}
	}
}

func TestParseJupyter(t *testing.T) {
	cases := []struct {
		name, in, lang string
		cells          []Cell
		err            string
	}{
		{"lines and markdown", `{"cells":[{"cell_type":"code","source":["a = 1\n","b = 2\n"]},{"cell_type":"markdown","source":"# T"}],"metadata":{},"nbformat":4}`,
			Python, []Cell{{Source: "a = 1\nb = 2"}, {Source: "%md\n# T", Markdown: true}}, ""},
		{"kernelspec language", `{"cells":[],"metadata":{"kernelspec":{"language":"scala"}}}`, Scala, nil, ""},
		{"language_info", `{"cells":[],"metadata":{"language_info":{"name":"R"}}}`, R, nil, ""},
		{"Databricks metadata wins", `{"cells":[],"metadata":{"application/vnd.databricks.v1+notebook":{"language":"sql"},"language_info":{"name":"python"}}}`, SQL, nil, ""},
		{"unknown language is Python", `{"cells":[],"metadata":{"language_info":{"name":"julia"}}}`, Python, nil, ""},
		{"not JSON", `{`, "", nil, "not a Jupyter notebook"},
		{"no cells", `{"metadata":{}}`, "", nil, "no cells"},
		{"cells not a list", `{"cells": 5}`, "", nil, "not a Jupyter notebook"},
		{"bad source", `{"cells":[{"cell_type":"code","source":5}]}`, "", nil, "neither a string nor a list"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cells, lang, err := ParseJupyter([]byte(c.in))
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || lang != c.lang {
				t.Fatalf("ParseJupyter = %s, %v; want %s", lang, err, c.lang)
			}
			if diff := cmp.Diff(c.cells, cells); diff != "" {
				t.Errorf("cells (-want +got):\n%s", diff)
			}
		})
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
		{"source keeps the extension", "/a/nb.py", "SOURCE", "PYTHON", []byte("print(1)"), "/a/nb.py", Notebook, Python, ""},
		{"source is the default format", "/a/nb", "", "SCALA", []byte("1"), "/a/nb", Notebook, Scala, ""},
		{"source language from extension", "/a/nb.sql", "SOURCE", "", []byte("select 1"), "/a/nb.sql", Notebook, SQL, ""},
		{"source language from header", "/a/nb", "SOURCE", "", []byte("// Databricks notebook source\n1"), "/a/nb", Notebook, Scala, ""},
		{"source without a language", "/a/nb", "SOURCE", "", []byte("x"), "", "", "", "language is required"},
		{"auto notebook strips extension", "/a/nb.py", "AUTO", "", header, "/a/nb", Notebook, Python, ""},
		{"auto R notebook", "/a/nb.r", "AUTO", "", header, "/a/nb", Notebook, R, ""},
		{"auto R notebook, capital extension", "/a/nb.R", "AUTO", "", header, "/a/nb", Notebook, R, ""},
		{"auto SQL notebook", "/a/q.sql", "AUTO", "", []byte("-- Databricks notebook source\nselect 1"), "/a/q", Notebook, SQL, ""},
		{"auto Scala notebook", "/a/s.scala", "AUTO", "", []byte("// Databricks notebook source\n1"), "/a/s", Notebook, Scala, ""},
		{"auto plain python is a file", "/a/lib.py", "AUTO", "", []byte("def f(): pass\n"), "/a/lib.py", File, "", ""},
		{"auto header of another language is a file", "/a/q.sql", "AUTO", "", header, "/a/q.sql", File, "", ""},
		{"auto header without a notebook extension is a file", "/a/readme", "AUTO", "", header, "/a/readme", File, "", ""},
		{"auto text file", "/a/data.txt", "AUTO", "", []byte("print(1)"), "/a/data.txt", File, "", ""},
		{"auto ipynb", "/a/x.ipynb", "AUTO", "", ipynb, "/a/x", Notebook, Python, ""},
		{"auto broken ipynb", "/a/x.ipynb", "AUTO", "", []byte("{"), "", "", "", "Could not import"},
		{"jupyter", "/a/x.ipynb", "JUPYTER", "", ipynb, "/a/x", Notebook, Python, ""},
		{"jupyter without extension", "/a/x", "JUPYTER", "", ipynb, "/a/x", Notebook, Python, ""},
		{"jupyter language override", "/a/x.ipynb", "JUPYTER", "SCALA", ipynb, "/a/x", Notebook, Scala, ""},
		{"broken jupyter", "/a/x.ipynb", "JUPYTER", "", []byte("{"), "", "", "", "Could not import"},
		{"raw file", "/a/data.csv", "RAW", "", []byte("a,b"), "/a/data.csv", File, "", ""},
		{"raw keeps a notebook-looking file", "/a/nb.py", "RAW", "", header, "/a/nb.py", File, "", ""},
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
			switch {
			case o.ObjectType == Notebook && string(stored) != string(ToSource(stored, o.Language)):
				t.Errorf("notebook not stored in canonical SOURCE form: %q", stored)
			case o.ObjectType == File && string(stored) != string(c.content):
				t.Errorf("file contents changed: %q", stored)
			}
		})
	}
}

func TestExportAs(t *testing.T) {
	nb := Object{Path: "/a/nb", ObjectType: Notebook, Language: SQL}
	file := Object{Path: "/a/data.csv", ObjectType: File}
	dir := Object{Path: "/a", ObjectType: Directory}
	cases := []struct {
		name   string
		o      Object
		format string
		want   string
		err    string
	}{
		{"notebook by default", nb, "", "SOURCE", ""},
		{"notebook SOURCE", nb, "SOURCE", "SOURCE", ""},
		{"notebook AUTO", nb, "AUTO", "SOURCE", ""},
		{"notebook JUPYTER", nb, "JUPYTER", "JUPYTER", ""},
		{"notebook lower case", nb, "jupyter", "JUPYTER", ""},
		{"notebook RAW", nb, "RAW", "", "RAW is for files"},
		{"file by default", file, "", "RAW", ""},
		{"file SOURCE", file, "SOURCE", "RAW", ""},
		{"file AUTO", file, "AUTO", "RAW", ""},
		{"file RAW", file, "RAW", "RAW", ""},
		{"file JUPYTER", file, "JUPYTER", "", "not a notebook"},
		{"folder", dir, "SOURCE", "", "is a folder"},
		{"HTML", nb, "HTML", "", "not supported by Tandem"},
		{"DBC", dir, "DBC", "", "not supported by Tandem"},
		{"unknown", file, "ZIP", "", "Unknown export format"},
	}
	for _, c := range cases {
		got, err := exportAs(c.o, c.format)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: %q, %v; want an error with %q", c.name, got, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%s: %q, %v; want %q", c.name, got, err, c.want)
		}
	}
}
