package app

import "os"

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o644) }
