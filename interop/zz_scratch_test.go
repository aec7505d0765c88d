package interop

import (
	"context"
	"testing"
	"time"

	"github.com/burrow-relay/burrow/mls"
)

func TestZZScratch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	g := &testGroup{t: t, ctx: ctx, cfg: testConfig(ctx, t)}
	b0 := g.newMember("b0", KindBurrow)
	x0 := g.newMember("x0", KindMLSGo)
	g.create(b0)
	g.externalJoin(x0, b0)
	for _, m := range []*member{b0, x0} {
		var gi GroupInfoResult
		g.call(m, "group_info", nil, &gi)
		msg, err := mls.DecodeMLSMessage(gi.GroupInfo)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		for _, e := range msg.GroupInfo.Extensions {
			t.Logf("%s ext %d: %x", m.name, e.Type, e.Data[:min(len(e.Data), 40)])
		}
		t.Logf("%s conf tag %x epoch %d signer %d", m.name, msg.GroupInfo.ConfirmationTag, msg.GroupInfo.GroupContext.Epoch, msg.GroupInfo.Signer)
	}
}
