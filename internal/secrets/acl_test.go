package secrets

import (
	"testing"

	"github.com/tandemdata/tandem/internal/principal"
)

var (
	ann   = principal.Principal{ID: "1", Kind: principal.User, Name: "ann@example.com", Groups: []string{"eng", "users"}}
	admin = principal.Principal{ID: "2", Kind: principal.User, Name: "root@example.com", Groups: []string{"admins", "users"}, Admin: true}
	robot = principal.Principal{ID: "3", Kind: principal.ServicePrincipal, Name: "6f1c3c7e-0d2a-4c4e-9a55-0d3f8c1b2a10", Groups: []string{"users"}}
)

// TestMayFollowsTheLevelEachActionNeeds walks every action against every
// level a user can hold on a scope.
func TestMayFollowsTheLevelEachActionNeeds(t *testing.T) {
	all := []Action{ListSecrets, GetSecret, PutSecret, DeleteSecret, PutACL, DeleteACL, ListACLs, GetACL, DeleteScope}
	cases := []struct {
		level   Permission
		allowed []Action
	}{
		{"", nil},
		{Read, []Action{ListSecrets, GetSecret}},
		{Write, []Action{ListSecrets, GetSecret, PutSecret, DeleteSecret}},
		{Manage, all},
	}
	for _, c := range cases {
		var acls []ACL
		if c.level != "" {
			acls = []ACL{{Principal: ann.Name, Permission: c.level}}
		}
		for _, a := range all {
			want := false
			for _, x := range c.allowed {
				want = want || x == a
			}
			if got := May(ann, a, acls); got != want {
				t.Errorf("level %q, %s: May = %v, want %v", c.level, a, got, want)
			}
		}
	}
}

func TestMayDecidesByTheHighestACLNamingThePrincipal(t *testing.T) {
	cases := []struct {
		name string
		p    principal.Principal
		a    Action
		acls []ACL
		want bool
	}{
		{"admin without any ACL", admin, DeleteScope, nil, true},
		{"admin, unknown action", admin, Action("dropEverything"), nil, false},
		{"no principal", principal.Principal{}, ListSecrets, []ACL{{Principal: "users", Permission: Manage}}, false},
		{"someone else's ACL", ann, GetSecret, []ACL{{Principal: "bob@example.com", Permission: Manage}}, false},
		{"through a group", ann, PutSecret, []ACL{{Principal: "eng", Permission: Write}}, true},
		{"through users (initial_manage_principal)", ann, DeleteScope, []ACL{{Principal: "users", Permission: Manage}}, true},
		{"the highest of direct and group", ann, PutACL, []ACL{{Principal: ann.Name, Permission: Read}, {Principal: "eng", Permission: Manage}}, true},
		{"a lower group ACL does not lower a direct one", ann, PutSecret, []ACL{{Principal: ann.Name, Permission: Write}, {Principal: "users", Permission: Read}}, true},
		{"user names compare without case", ann, GetSecret, []ACL{{Principal: "ANN@Example.com", Permission: Read}}, true},
		{"group names compare without case", ann, GetSecret, []ACL{{Principal: "ENG", Permission: Read}}, true},
		{"service principal by application id", robot, GetSecret, []ACL{{Principal: robot.Name, Permission: Read}}, true},
		{"service principal through users", robot, PutSecret, []ACL{{Principal: "users", Permission: Read}}, false},
		{"an unknown level gives nothing", ann, GetSecret, []ACL{{Principal: ann.Name, Permission: "OWNER"}}, false},
		{"an ACL without a principal names no one", principal.Principal{ID: "9", Name: "x"}, GetSecret, []ACL{{Principal: "", Permission: Manage}}, false},
	}
	for _, c := range cases {
		if got := May(c.p, c.a, c.acls); got != c.want {
			t.Errorf("%s: May = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestLevelIsTheHighestMatchingPermission(t *testing.T) {
	acls := []ACL{{Principal: "users", Permission: Read}, {Principal: "eng", Permission: Write}, {Principal: "bob@example.com", Permission: Manage}}
	if got := Level(ann, acls); got != Write {
		t.Errorf("Level(ann) = %q, want WRITE", got)
	}
	if got := Level(robot, acls); got != Read {
		t.Errorf("Level(robot) = %q, want READ", got)
	}
	if got := Level(robot, nil); got != "" {
		t.Errorf("Level without ACLs = %q", got)
	}
}
