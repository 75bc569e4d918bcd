package store_test

const crashChildEnv = "HOSTCOMPUTE_STORE_CRASH_CHILD"

func runCrashChild() bool { return false }
