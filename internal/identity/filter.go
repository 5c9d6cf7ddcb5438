package identity

import (
	"fmt"
	"strings"
	"unicode"
)

// Filter is a parsed SCIM filter expression (RFC 7644 §3.4.2.2), the subset
// Databricks accepts: attribute comparisons with eq, ne, co, sw, ew, pr, gt,
// ge, lt, le, combined with and, or, not and parentheses.
type Filter interface {
	// Match reports whether a resource, given as its attribute lookup, matches.
	Match(attr func(name string) []string) bool
}

type cmpFilter struct {
	attr  string
	op    string
	value string
}

type andFilter struct{ l, r Filter }
type orFilter struct{ l, r Filter }
type notFilter struct{ f Filter }

func (f andFilter) Match(a func(string) []string) bool { return f.l.Match(a) && f.r.Match(a) }
func (f orFilter) Match(a func(string) []string) bool  { return f.l.Match(a) || f.r.Match(a) }
func (f notFilter) Match(a func(string) []string) bool { return !f.f.Match(a) }

func (f cmpFilter) Match(attr func(string) []string) bool {
	vals := attr(f.attr)
	if f.op == "pr" {
		for _, v := range vals {
			if v != "" {
				return true
			}
		}
		return false
	}
	if f.op == "ne" {
		for _, v := range vals {
			if strings.EqualFold(v, f.value) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		// SCIM compares strings case-insensitively for these attributes.
		lv, lf := strings.ToLower(v), strings.ToLower(f.value)
		var ok bool
		switch f.op {
		case "eq":
			ok = lv == lf
		case "co":
			ok = strings.Contains(lv, lf)
		case "sw":
			ok = strings.HasPrefix(lv, lf)
		case "ew":
			ok = strings.HasSuffix(lv, lf)
		case "gt":
			ok = lv > lf
		case "ge":
			ok = lv >= lf
		case "lt":
			ok = lv < lf
		case "le":
			ok = lv <= lf
		}
		if ok {
			return true
		}
	}
	return false
}

// ParseFilter parses a SCIM filter. An empty string matches everything.
func ParseFilter(s string) (Filter, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	if len(s) > 4096 {
		return nil, fmt.Errorf("filter is longer than 4096 characters")
	}
	toks, err := lexFilter(s)
	if err != nil {
		return nil, err
	}
	p := &filterParser{toks: toks}
	f, err := p.or()
	if err != nil {
		return nil, err
	}
	if p.pos != len(p.toks) {
		return nil, fmt.Errorf("unexpected %q in filter", p.toks[p.pos].text)
	}
	return f, nil
}

type token struct {
	text   string
	quoted bool
}

func lexFilter(s string) ([]token, error) {
	var toks []token
	r := []rune(s)
	for i := 0; i < len(r); {
		c := r[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '(' || c == ')':
			toks = append(toks, token{text: string(c)})
			i++
		case c == '"':
			var b strings.Builder
			i++
			closed := false
			for i < len(r) {
				if r[i] == '\\' && i+1 < len(r) {
					b.WriteRune(r[i+1])
					i += 2
					continue
				}
				if r[i] == '"' {
					closed = true
					i++
					break
				}
				b.WriteRune(r[i])
				i++
			}
			if !closed {
				return nil, fmt.Errorf("unterminated string in filter")
			}
			toks = append(toks, token{text: b.String(), quoted: true})
		default:
			start := i
			for i < len(r) && !unicode.IsSpace(r[i]) && r[i] != '(' && r[i] != ')' && r[i] != '"' {
				i++
			}
			toks = append(toks, token{text: string(r[start:i])})
		}
	}
	return toks, nil
}

type filterParser struct {
	toks []token
	pos  int
}

func (p *filterParser) peekWord(w string) bool {
	return p.pos < len(p.toks) && !p.toks[p.pos].quoted && strings.EqualFold(p.toks[p.pos].text, w)
}

func (p *filterParser) or() (Filter, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.peekWord("or") {
		p.pos++
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = orFilter{l, r}
	}
	return l, nil
}

func (p *filterParser) and() (Filter, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.peekWord("and") {
		p.pos++
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = andFilter{l, r}
	}
	return l, nil
}

func (p *filterParser) unary() (Filter, error) {
	if p.peekWord("not") {
		p.pos++
		f, err := p.unary()
		if err != nil {
			return nil, err
		}
		return notFilter{f}, nil
	}
	if p.peekWord("(") {
		p.pos++
		f, err := p.or()
		if err != nil {
			return nil, err
		}
		if !p.peekWord(")") {
			return nil, fmt.Errorf("missing ) in filter")
		}
		p.pos++
		return f, nil
	}
	return p.comparison()
}

var filterOps = map[string]bool{"eq": true, "ne": true, "co": true, "sw": true, "ew": true, "pr": true, "gt": true, "ge": true, "lt": true, "le": true}

func (p *filterParser) comparison() (Filter, error) {
	if p.pos >= len(p.toks) || p.toks[p.pos].quoted {
		return nil, fmt.Errorf("expected an attribute name in filter")
	}
	attr := p.toks[p.pos].text
	p.pos++
	if p.pos >= len(p.toks) || p.toks[p.pos].quoted || !filterOps[strings.ToLower(p.toks[p.pos].text)] {
		return nil, fmt.Errorf("expected an operator (eq, ne, co, sw, ew, pr, gt, ge, lt, le) after %q", attr)
	}
	op := strings.ToLower(p.toks[p.pos].text)
	p.pos++
	if op == "pr" {
		return cmpFilter{attr: attr, op: op}, nil
	}
	if p.pos >= len(p.toks) {
		return nil, fmt.Errorf("expected a value after %s %s", attr, op)
	}
	v := p.toks[p.pos]
	p.pos++
	if !v.quoted && (v.text == "(" || v.text == ")") {
		return nil, fmt.Errorf("expected a value after %s %s", attr, op)
	}
	return cmpFilter{attr: attr, op: op, value: v.text}, nil
}
