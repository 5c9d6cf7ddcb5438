package keyvault

var (
	KeyWrap   = keyWrap
	KeyUnwrap = keyUnwrap
)
