#ifndef PC_CORE_TIMER_H
#define PC_CORE_TIMER_H
/* Monotonic wall time in seconds. */
double pc_time_now(void);
/* CPU time of the whole process (all threads, user + system) in seconds. */
double pc_cpu_time_now(void);
/* Peak resident set size of this process in MiB (from getrusage). */
double pc_peak_rss_mb(void);
#endif
