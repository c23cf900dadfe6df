/*
** fsync_pool: fsync(2) on worker threads, so that a task waiting for the
** disk leaves the event loop free for every other connection.
**
** The loop thread submits a descriptor the job owns (a dup, or a
** directory it opened); a worker fsyncs it, closes it, and signals the
** job's eventfd, which the loop watches like any socket: the waiting task
** parks on it with parley_wait.  A task that stops waiting (cancelled)
** releases the job; the worker then frees it when the fsync is over, so a
** descriptor is never closed while a worker still uses it.
**
** Threads start on the first submit and are joined by fsync_pool_free.
** Everything here but the worker runs on the loop thread.
*/
#ifndef PARLEY_FSYNC_POOL_H
#define PARLEY_FSYNC_POOL_H

#include "driver.h"

typedef struct fsync_job {
  pollable p;               /* p.fd: eventfd, readable once the job is done */
  int fd;                   /* synced and closed by the worker */
  int err;                  /* fsync's errno, 0 on success */
  int done, abandoned;      /* under the pool's lock */
  struct fsync_job *next;   /* queue link */
} fsync_job;

typedef struct fsync_pool fsync_pool;

typedef struct fsync_stats {
  int workers;              /* threads running */
  int jobs;                 /* submitted and not yet freed */
  int max_jobs;
  long long completed;      /* fsyncs finished since the start */
} fsync_stats;

/* NULL when out of memory */
fsync_pool *fsync_pool_new(int workers, int max_jobs);

/*
** Queues an fsync of fd.  0: *out is the job, fd belongs to it; EAGAIN:
** max_jobs are in flight, wait and retry; another errno: no thread or no
** eventfd could be had.  On failure fd stays the caller's.
*/
int fsync_pool_submit(fsync_pool *pool, int fd, fsync_job **out);

/* 1 and *err once the worker has finished the job, else 0 */
int fsync_pool_done(fsync_pool *pool, fsync_job *j, int *err);

/* the loop is done with j: frees it now, or lets the worker when it ends */
void fsync_pool_release(fsync_pool *pool, fsync_job *j);

void fsync_pool_stats(fsync_pool *pool, fsync_stats *st);

/* lets the workers drain the queue, joins them, frees the pool */
void fsync_pool_free(fsync_pool *pool);

#endif
