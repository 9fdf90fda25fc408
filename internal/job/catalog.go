package job

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Catalog is the set of jobs a process knows: the built-in ones and those loaded from a jobs
// directory when the process starts. A start message names a job from here, never a file: the
// directory is read once, so what a queue message can start is fixed by the deployment.
type Catalog struct {
	specs map[string][]byte // job name -> validated spec JSON; parsed again per lookup so callers own their copy
	from  map[string]string // job name -> file it came from ("" = built in)
}

// Builtins is the catalog of the built-in jobs only.
func Builtins() *Catalog {
	c := &Catalog{specs: map[string][]byte{}, from: map[string]string{}}
	for name, raw := range builtins {
		c.specs[name], c.from[name] = []byte(raw), ""
	}
	return c
}

// LoadCatalog returns the built-in jobs plus every *.json spec in dir (not its subdirectories), each
// parsed and validated. A missing dir is an error only when required (a directory the operator named
// must exist; the default one may be absent, meaning no custom jobs). A bad spec is an error naming
// its file and the field; so is a spec whose name is a built-in job's or another file's.
func LoadCatalog(dir string, required bool) (*Catalog, error) {
	c := Builtins()
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && !required {
			return c, nil
		}
		return nil, fmt.Errorf("job: jobs directory: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("job: %s: %w", path, err)
		}
		s, err := Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if prev, dup := c.from[s.Name]; dup {
			if prev == "" {
				return nil, fmt.Errorf("%s: %w", path, &FieldError{Job: s.Name, Field: "name", Problem: "is a built-in job's name; give the custom job its own"})
			}
			return nil, fmt.Errorf("%s: %w", path, &FieldError{Job: s.Name, Field: "name", Problem: "is also the name of the job in " + prev})
		}
		c.specs[s.Name], c.from[s.Name] = data, path
	}
	return c, nil
}

// Lookup returns a fresh copy of the job called name. Only names are accepted (the job-name rule
// refuses paths and URLs), so a message cannot make the process read a file.
func (c *Catalog) Lookup(name string) (*Spec, error) {
	if !jobRE.MatchString(name) {
		return nil, fmt.Errorf("%w %q: not a job name (lowercase letters, digits and '-')", ErrUnknownJob, truncate(name, 80))
	}
	raw, ok := c.specs[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownJob, name, strings.Join(c.Names(), ", "))
	}
	return Parse(raw)
}

// Names lists the known jobs, sorted.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.specs))
	for n := range c.specs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Source is the file a job was loaded from, or "" for a built-in job.
func (c *Catalog) Source(name string) string { return c.from[name] }
