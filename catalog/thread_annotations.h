// Clang thread-safety annotations (clang.llvm.org/docs/ThreadSafetyAnalysis.html),
// after LevelDB's port/thread_annotations.h. With clang and
// -Wthread-safety (the CI's CHAINSWAP_THREAD_SAFETY build) the compiler
// checks that every field marked GUARDED_BY is only touched with its lock
// held, that every function marked REQUIRES is only called with it held,
// and that locks are taken in the order ACQUIRED_BEFORE/AFTER state. With
// other compilers the macros expand to nothing.
//
// The lockable types they apply to are in catalog/mutex.h.
#pragma once

#if defined(__clang__)
#define CS_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define CS_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) CS_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY CS_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) CS_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) CS_THREAD_ANNOTATION(pt_guarded_by(x))
#define ACQUIRED_BEFORE(...) CS_THREAD_ANNOTATION(acquired_before(__VA_ARGS__))
#define ACQUIRED_AFTER(...) CS_THREAD_ANNOTATION(acquired_after(__VA_ARGS__))
#define REQUIRES(...) CS_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define REQUIRES_SHARED(...) CS_THREAD_ANNOTATION(requires_shared_capability(__VA_ARGS__))
#define ACQUIRE(...) CS_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define ACQUIRE_SHARED(...) CS_THREAD_ANNOTATION(acquire_shared_capability(__VA_ARGS__))
#define RELEASE(...) CS_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define RELEASE_SHARED(...) CS_THREAD_ANNOTATION(release_shared_capability(__VA_ARGS__))
#define RELEASE_GENERIC(...) CS_THREAD_ANNOTATION(release_generic_capability(__VA_ARGS__))
#define TRY_ACQUIRE(...) CS_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define TRY_ACQUIRE_SHARED(...) CS_THREAD_ANNOTATION(try_acquire_shared_capability(__VA_ARGS__))
#define EXCLUDES(...) CS_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define ASSERT_CAPABILITY(x) CS_THREAD_ANNOTATION(assert_capability(x))
#define ASSERT_SHARED_CAPABILITY(x) CS_THREAD_ANNOTATION(assert_shared_capability(x))
#define RETURN_CAPABILITY(x) CS_THREAD_ANNOTATION(lock_returned(x))
#define NO_THREAD_SAFETY_ANALYSIS CS_THREAD_ANNOTATION(no_thread_safety_analysis)
