package workspace

import (
	"bytes"
	"encoding/json"
	"fmt"
	"path"
	"strings"
)

// Languages of notebooks.
const (
	Python = "PYTHON"
	SQL    = "SQL"
	Scala  = "SCALA"
	R      = "R"
)

// comment is the line-comment prefix of a notebook language.
func comment(lang string) string {
	switch lang {
	case SQL:
		return "--"
	case Scala:
		return "//"
	}
	return "#"
}

// Header is the first line of a notebook in SOURCE format.
func Header(lang string) string { return comment(lang) + " Databricks notebook source" }

func separator(lang string) string { return comment(lang) + " COMMAND ----------" }

func magicPrefix(lang string) string { return comment(lang) + " MAGIC " }

// extOf maps file extensions to notebook languages.
var extOf = map[string]string{".py": Python, ".sql": SQL, ".scala": Scala, ".r": R}

// Extension is the file extension of a notebook language in SOURCE format.
func Extension(lang string) string {
	switch lang {
	case SQL:
		return "sql"
	case Scala:
		return "scala"
	case R:
		return "r"
	}
	return "py"
}

// LanguageOfName returns the notebook language a file name's extension
// names, or "".
func LanguageOfName(name string) string {
	return extOf[strings.ToLower(path.Ext(name))]
}

// hasHeader reports whether content starts with the SOURCE header of lang.
func hasHeader(content []byte, lang string) bool {
	return firstLine(content) == Header(lang)
}

func firstLine(content []byte) string {
	if i := bytes.IndexByte(content, '\n'); i >= 0 {
		content = content[:i]
	}
	return strings.TrimSpace(strings.TrimPrefix(string(content), "\ufeff"))
}

// detectSource reports the language of content that starts with a
// Databricks notebook header, or "".
func detectSource(content []byte) string {
	switch firstLine(content) {
	case "# Databricks notebook source":
		return Python // R notebooks share the header; the extension decides
	case "-- Databricks notebook source":
		return SQL
	case "// Databricks notebook source":
		return Scala
	}
	return ""
}

// Cell is one cell of a notebook.
type Cell struct {
	Source   string // the cell's code, magics included ("%md ...")
	Markdown bool
}

// ParseSource splits a SOURCE-format notebook into cells: the header line
// goes, separators divide cells, and "MAGIC" comment lines become magic
// commands again.
func ParseSource(content []byte, lang string) []Cell {
	text := strings.ReplaceAll(string(content), "\r\n", "\n")
	text = strings.TrimPrefix(text, "\ufeff")
	lines := strings.Split(text, "\n")
	if len(lines) > 0 && strings.TrimSpace(lines[0]) == Header(lang) {
		lines = lines[1:]
	}
	sep, magic, bareMagic := separator(lang), magicPrefix(lang), strings.TrimSpace(magicPrefix(lang))
	var cells []Cell
	var cur []string
	flush := func() {
		src := strings.Trim(strings.Join(cur, "\n"), "\n")
		cur = nil
		if src == "" && len(cells) > 0 {
			return
		}
		_, md := markdownBody(src)
		cells = append(cells, Cell{Source: src, Markdown: md})
	}
	for _, l := range lines {
		if strings.TrimSpace(l) == sep {
			flush()
			continue
		}
		switch {
		case strings.HasPrefix(l, magic):
			l = strings.TrimPrefix(l, magic)
		case strings.TrimSpace(l) == bareMagic:
			l = ""
		}
		cur = append(cur, l)
	}
	flush()
	if len(cells) == 1 && cells[0].Source == "" {
		return nil
	}
	return cells
}

// RenderSource writes cells as a SOURCE-format notebook. Like Databricks'
// export, it ends with the last cell's last line, without a newline.
func RenderSource(cells []Cell, lang string) []byte {
	var b strings.Builder
	b.WriteString(Header(lang))
	b.WriteString("\n")
	for i, c := range cells {
		if i > 0 {
			b.WriteString("\n\n" + separator(lang) + "\n\n")
		}
		src := c.Source
		if strings.HasPrefix(src, "%") {
			// Magic cells are commented out so the file stays valid code.
			var ls []string
			for _, l := range strings.Split(src, "\n") {
				if l == "" {
					ls = append(ls, strings.TrimSpace(magicPrefix(lang)))
				} else {
					ls = append(ls, magicPrefix(lang)+l)
				}
			}
			src = strings.Join(ls, "\n")
		}
		b.WriteString(src)
	}
	return []byte(b.String())
}

// ToSource turns imported content into the canonical SOURCE form in which
// notebooks are stored and exported: Databricks keeps cells, not the file,
// so a notebook exports the same whatever blank lines its source had, and
// code without the header becomes a one-cell notebook.
func ToSource(content []byte, lang string) []byte {
	return RenderSource(ParseSource(content, lang), lang)
}

// ipynb is the subset of the Jupyter format Tandem reads and writes.
type ipynb struct {
	Cells         []ipynbCell    `json:"cells"`
	Metadata      map[string]any `json:"metadata"`
	NBFormat      int            `json:"nbformat"`
	NBFormatMinor int            `json:"nbformat_minor"`
}

type ipynbCell struct {
	CellType string          `json:"cell_type"`
	Source   json.RawMessage `json:"source"`
	Metadata map[string]any  `json:"metadata"`
	// Code cells must carry outputs and execution_count (null when never
	// run); markdown cells must not (nbformat 4 schema).
	Outputs *[]any          `json:"outputs,omitempty"`
	ExecCnt json.RawMessage `json:"execution_count,omitempty"`
}

// markdownBody returns the text of a %md cell (on the magic's line or the
// lines after it), and whether the cell is one. %md-sandbox and other
// magics are not markdown.
func markdownBody(src string) (string, bool) {
	rest, ok := strings.CutPrefix(src, "%md")
	if !ok {
		return "", false
	}
	if rest == "" {
		return "", true
	}
	if rest[0] == '\n' || rest[0] == ' ' {
		return rest[1:], true
	}
	return "", false
}

// cellSource reads a Jupyter cell source: a string or a list of lines.
func cellSource(raw json.RawMessage) (string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var lines []string
	if err := json.Unmarshal(raw, &lines); err != nil {
		return "", fmt.Errorf("a cell's source is neither a string nor a list of strings")
	}
	return strings.Join(lines, ""), nil
}

// ParseJupyter reads an .ipynb notebook: its cells and its language.
func ParseJupyter(content []byte) ([]Cell, string, error) {
	var nb ipynb
	if err := json.Unmarshal(content, &nb); err != nil {
		return nil, "", fmt.Errorf("not a Jupyter notebook: %v", err)
	}
	if nb.Cells == nil {
		return nil, "", fmt.Errorf("not a Jupyter notebook: no cells")
	}
	// The language: Databricks' own metadata first (its exports carry
	// it), then Jupyter's language_info and kernelspec; Python by default.
	lang := Python
	for _, f := range []struct{ key, field string }{
		{"application/vnd.databricks.v1+notebook", "language"}, {"language_info", "name"}, {"kernelspec", "language"},
	} {
		if m, ok := nb.Metadata[f.key].(map[string]any); ok {
			if n, ok := m[f.field].(string); ok && languageOfJupyter(n, "") != "" {
				lang = languageOfJupyter(n, "")
				break
			}
		}
	}
	var cells []Cell
	for _, c := range nb.Cells {
		src, err := cellSource(c.Source)
		if err != nil {
			return nil, "", err
		}
		src = strings.TrimRight(src, "\n")
		switch c.CellType {
		case "markdown":
			cells = append(cells, Cell{Source: "%md\n" + src, Markdown: true})
		case "code", "raw":
			_, md := markdownBody(src)
			cells = append(cells, Cell{Source: src, Markdown: md})
		}
	}
	return cells, lang, nil
}

func languageOfJupyter(name, def string) string {
	switch strings.ToLower(name) {
	case "python", "python3":
		return Python
	case "sql":
		return SQL
	case "scala":
		return Scala
	case "r":
		return R
	}
	return def
}

// RenderJupyter writes cells as an .ipynb notebook (nbformat 4).
func RenderJupyter(cells []Cell, lang, name string) ([]byte, error) {
	nb := ipynb{NBFormat: 4, NBFormatMinor: 0, Cells: []ipynbCell{},
		Metadata: map[string]any{
			"language_info":                          map[string]any{"name": strings.ToLower(lang)},
			"application/vnd.databricks.v1+notebook": map[string]any{"notebookName": name, "language": strings.ToLower(lang)},
		}}
	for _, c := range cells {
		src := c.Source
		cell := ipynbCell{CellType: "code", Metadata: map[string]any{}, Outputs: &[]any{}, ExecCnt: json.RawMessage("null")}
		if body, ok := markdownBody(src); ok {
			cell = ipynbCell{CellType: "markdown", Metadata: map[string]any{}}
			src = body
		}
		lines := splitKeepNewlines(src)
		cell.Source, _ = json.Marshal(lines)
		nb.Cells = append(nb.Cells, cell)
	}
	return json.MarshalIndent(nb, "", " ")
}

func splitKeepNewlines(s string) []string {
	if s == "" {
		return []string{}
	}
	parts := strings.SplitAfter(s, "\n")
	if parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	return parts
}
