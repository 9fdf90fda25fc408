package job

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// Program is a compiled recalculation: one expression per written column.
type Program struct {
	cols  []string
	progs []*vm.Program
}

// compileSet type-checks every expression of a recalculate transform against the declared column
// types, so a typo or a type mismatch fails at load time rather than on record 40,000.
func compileSet(s *Spec) (*Program, error) {
	env := map[string]any{}
	for _, c := range s.Input {
		env[c] = zeroOf(s.Columns[c])
	}
	var p Program
	cols := make([]string, 0, len(s.Transform.Set))
	for c := range s.Transform.Set {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	for _, col := range cols {
		field := "transform.set." + col
		if !s.IsWritable(col) {
			return nil, &FieldError{Job: s.Name, Field: field, Problem: "column is not on the writable allow-list"}
		}
		prog, err := expr.Compile(s.Transform.Set[col], expr.Env(env))
		if err != nil {
			return nil, &FieldError{Job: s.Name, Field: field, Problem: err.Error()}
		}
		if t := prog.Node().Type(); !assignable(s.Columns[col], t) {
			return nil, &FieldError{Job: s.Name, Field: field, Problem: fmt.Sprintf("expression yields %v, column is %s", t, s.Columns[col])}
		}
		p.cols = append(p.cols, col)
		p.progs = append(p.progs, prog)
	}
	return &p, nil
}

// Compile returns the recalculation program of a validated recalculate spec.
func (s *Spec) Compile() (*Program, error) { return compileSet(s) }

// Eval computes the new values of one record from its current (normalized) values.
func (p *Program) Eval(current map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(p.cols))
	for i, col := range p.cols {
		v, err := expr.Run(p.progs[i], current)
		if err != nil {
			return nil, fmt.Errorf("expression for %s: %w", col, err)
		}
		out[col] = v
	}
	return out, nil
}

func zeroOf(typ string) any {
	switch typ {
	case TypeInt:
		return 0
	case TypeDecimal:
		return 0.0
	case TypeBool:
		return false
	default:
		return ""
	}
}

func assignable(typ string, t reflect.Type) bool {
	if t == nil || t.Kind() == reflect.Interface {
		return true // decided per record at run time
	}
	switch typ {
	case TypeInt:
		return t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64
	case TypeDecimal:
		return (t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64) || t.Kind() == reflect.Float64 || t.Kind() == reflect.Float32
	case TypeBool:
		return t.Kind() == reflect.Bool
	default:
		return t.Kind() == reflect.String
	}
}
