package job

import (
	"encoding/json"
	"testing"
)

// TestPickClassifiesByDecodedKind: the local queue tells plan continuations from chunks by decoding
// the kind, so spacing or a nested "kind":"plan" (a property of a later version) does not fool it.
func TestPickClassifiesByDecodedKind(t *testing.T) {
	chunk, err := json.Marshal(Message{V: MessageVersion, Kind: KindChunk, Job: "j", Run: "r", Seq: 1, IDs: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	spacedPlan := `{ "v": 1, "job": "j", "run": "r", "kind" : "plan", "cursor": "" }`
	chunkNamedPlan := `{"v":1,"kind":"chunk","job":"plan","run":"r","seq":2,"ids":["b"],"later":{"kind":"plan"}}`
	msgs := []localMsg{newLocalMsg(string(chunk)), newLocalMsg(spacedPlan), newLocalMsg(chunkNamedPlan), newLocalMsg("not json")}
	if msgs[1].kind != KindPlan || msgs[0].kind != KindChunk || msgs[2].kind != KindChunk || msgs[3].kind != "" {
		t.Fatalf("kinds %q %q %q %q", msgs[0].kind, msgs[1].kind, msgs[2].kind, msgs[3].kind)
	}
	// Fewer chunks queued than the backlog: the plan continuation goes first.
	if i := pick(msgs, 10); i != 1 {
		t.Errorf("pick with a small backlog = %d, want the plan message (1)", i)
	}
	// Enough chunks queued: the oldest chunk goes first and planning waits.
	if i := pick(msgs, 2); i != 0 {
		t.Errorf("pick with a full backlog = %d, want the oldest chunk (0)", i)
	}
	if i := pick(msgs[:1], 10); i != 0 {
		t.Errorf("pick without a plan = %d, want 0", i)
	}
}
