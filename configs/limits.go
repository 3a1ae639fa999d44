package configs

// Plugin resource limits. They mirror hostabi.MaxMemoryPages and
// hostabi.MaxPoolSize (configs imports nothing), which Load enforces again.
// A plugin's worst case is pool_size × memory_pages × 64 KiB of guest
// memory; see hostabi/ABI.md §5.
const (
	// MaxMemoryPages is the largest memory_pages (1024 × 64 KiB = 64 MiB).
	MaxMemoryPages = 1024
	// MaxPoolSize is the largest pool_size.
	MaxPoolSize = 16
)

func validatePluginLimits(p string, pl Plugin, add func(string, string, ...any)) {
	if pl.MemoryPages > MaxMemoryPages {
		add(p+".memory_pages", "at most %d (64 MiB); 0 means 512 (32 MiB)", MaxMemoryPages)
	}
	if pl.CPUShare < 0 || pl.CPUShare > 1024 {
		add(p+".cpu_share", "must be in 0..1024 cores; 0 means the default (the plugins that leave it unset share all the cores but one)")
	}
	if pl.PoolSize < 0 || pl.PoolSize > MaxPoolSize {
		add(p+".pool_size", "must be in 0..%d; 0 means min(GOMAXPROCS, %d)", MaxPoolSize, MaxPoolSize)
	}
}
