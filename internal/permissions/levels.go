// Package permissions is the access control of every workspace object: the
// grants on each object, how they are inherited (workspace folders), how a
// caller's effective level is computed, and the Permissions API 2.0 over
// them. Domain packages register their object types and call Check on every
// endpoint; admins pass every check.
package permissions

// Level is a permission level, such as CAN_READ or CAN_MANAGE.
type Level string

// Permission levels Databricks uses.
const (
	None         Level = ""
	CanRead      Level = "CAN_READ"
	CanRun       Level = "CAN_RUN"
	CanEdit      Level = "CAN_EDIT"
	CanManage    Level = "CAN_MANAGE"
	CanAttachTo  Level = "CAN_ATTACH_TO"
	CanRestart   Level = "CAN_RESTART"
	CanView      Level = "CAN_VIEW"
	CanManageRun Level = "CAN_MANAGE_RUN"
	IsOwner      Level = "IS_OWNER"
	CanUse       Level = "CAN_USE"
)

// Descriptions of levels for permissionLevels.
var descriptions = map[Level]string{
	CanRead:      "Can view the object",
	CanRun:       "Can view and run the object",
	CanEdit:      "Can view, run and edit the object",
	CanManage:    "Can view, run, edit and change permissions of the object",
	CanAttachTo:  "Can attach to the object",
	CanRestart:   "Can attach to and restart the object",
	CanView:      "Can view the object and its runs",
	CanManageRun: "Can view the object and manage its runs",
	IsOwner:      "Owns the object",
	CanUse:       "Can use the object",
}

// Workspace object levels, lowest first; each includes the ones before it.
var (
	WorkspaceLevels = []Level{CanRead, CanRun, CanEdit, CanManage}
	ClusterLevels   = []Level{CanAttachTo, CanRestart, CanManage}
	PoolLevels      = []Level{CanAttachTo, CanManage}
	JobLevels       = []Level{CanView, CanManageRun, CanManage, IsOwner}
	TokenLevels     = []Level{CanUse}
)

// rank is the position of l in levels (1-based), 0 if absent.
func rank(levels []Level, l Level) int {
	for i, x := range levels {
		if x == l {
			return i + 1
		}
	}
	return 0
}

// Covers reports whether holding have grants need, under the level order of
// an object type.
func Covers(levels []Level, have, need Level) bool {
	h, n := rank(levels, have), rank(levels, need)
	return h > 0 && n > 0 && h >= n
}

// Max returns the higher of two levels of the same type.
func Max(levels []Level, a, b Level) Level {
	if rank(levels, b) > rank(levels, a) {
		return b
	}
	return a
}
