/*
** fsync_pool: worker threads that run fsync(2) for the loop (see
** fsync_pool.h).  One mutex guards the queue, the counters and every
** job's done/abandoned flags; a worker signals a job's eventfd while
** holding it, so the loop never frees a job a worker is about to touch.
*/
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "fsync_pool.h"

struct fsync_pool {
  pthread_mutex_t mu;
  pthread_cond_t cv;            /* a job was queued, or stop */
  fsync_job *head, *tail;       /* queued, not yet taken by a worker */
  pthread_t *threads;
  int want, nthreads, stop;
  int jobs, max_jobs;
  long long completed;
};

static void job_free(fsync_job *j) {
  close(j->p.fd);
  free(j);
}

static void *worker(void *arg) {
  fsync_pool *pool = (fsync_pool *)arg;
  pthread_mutex_lock(&pool->mu);
  for (;;) {
    fsync_job *j;
    int rc, e;
    while (pool->head == NULL && !pool->stop) pthread_cond_wait(&pool->cv, &pool->mu);
    if (pool->head == NULL) break;          /* stopping, and drained */
    j = pool->head;
    pool->head = j->next;
    if (pool->head == NULL) pool->tail = NULL;
    pthread_mutex_unlock(&pool->mu);
    rc = fsync(j->fd);
    e = rc != 0 ? errno : 0;
    close(j->fd);                           /* done with it before anyone hears */
    pthread_mutex_lock(&pool->mu);
    j->fd = -1;
    j->err = e;
    j->done = 1;
    pool->completed++;
    if (j->abandoned) {
      pool->jobs--;
      job_free(j);
    } else {
      uint64_t one = 1;
      ssize_t w = write(j->p.fd, &one, sizeof one);  /* an eventfd: cannot block */
      (void)w;
    }
  }
  pthread_mutex_unlock(&pool->mu);
  return NULL;
}

fsync_pool *fsync_pool_new(int workers, int max_jobs) {
  fsync_pool *pool = (fsync_pool *)calloc(1, sizeof *pool);
  if (pool == NULL) return NULL;
  pool->threads = (pthread_t *)calloc((size_t)workers, sizeof *pool->threads);
  if (pool->threads == NULL) {
    free(pool);
    return NULL;
  }
  pthread_mutex_init(&pool->mu, NULL);
  pthread_cond_init(&pool->cv, NULL);
  pool->want = workers;
  pool->max_jobs = max_jobs;
  return pool;
}

/* signals go to the loop thread (its self-pipe), never to a worker */
static int start_workers(fsync_pool *pool) {
  sigset_t all, old;
  int rc = 0;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  while (pool->nthreads < pool->want) {
    rc = pthread_create(&pool->threads[pool->nthreads], NULL, worker, pool);
    if (rc != 0) break;
    pool->nthreads++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return pool->nthreads > 0 ? 0 : rc;
}

int fsync_pool_submit(fsync_pool *pool, int fd, fsync_job **out) {
  fsync_job *j;
  int rc;
  /* only the loop thread starts threads and adds jobs: no lock needed to
     read nthreads; jobs only goes down behind our back */
  if (pool->nthreads < pool->want && (rc = start_workers(pool)) != 0) return rc;
  pthread_mutex_lock(&pool->mu);
  rc = pool->jobs >= pool->max_jobs;
  pthread_mutex_unlock(&pool->mu);
  if (rc) return EAGAIN;
  j = (fsync_job *)calloc(1, sizeof *j);
  if (j == NULL) return ENOMEM;
  j->p.fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (j->p.fd < 0) {
    rc = errno;
    free(j);
    return rc;
  }
  if ((rc = parley_watch(&j->p)) != 0) {
    job_free(j);
    return rc;
  }
  j->fd = fd;
  pthread_mutex_lock(&pool->mu);
  pool->jobs++;
  if (pool->tail) pool->tail->next = j; else pool->head = j;
  pool->tail = j;
  pthread_cond_signal(&pool->cv);
  pthread_mutex_unlock(&pool->mu);
  *out = j;
  return 0;
}

int fsync_pool_done(fsync_pool *pool, fsync_job *j, int *err) {
  int done;
  pthread_mutex_lock(&pool->mu);
  done = j->done;
  *err = j->err;
  pthread_mutex_unlock(&pool->mu);
  return done;
}

void fsync_pool_release(fsync_pool *pool, fsync_job *j) {
  int done;
  parley_forget(&j->p);
  parley_unwatch(&j->p);
  pthread_mutex_lock(&pool->mu);
  done = j->done;
  if (done) pool->jobs--;
  else j->abandoned = 1;                    /* the worker frees it */
  pthread_mutex_unlock(&pool->mu);
  if (done) job_free(j);
}

void fsync_pool_stats(fsync_pool *pool, fsync_stats *st) {
  pthread_mutex_lock(&pool->mu);
  st->workers = pool->nthreads;
  st->jobs = pool->jobs;
  st->max_jobs = pool->max_jobs;
  st->completed = pool->completed;
  pthread_mutex_unlock(&pool->mu);
}

void fsync_pool_free(fsync_pool *pool) {
  int i;
  pthread_mutex_lock(&pool->mu);
  pool->stop = 1;
  pthread_cond_broadcast(&pool->cv);
  pthread_mutex_unlock(&pool->mu);
  for (i = 0; i < pool->nthreads; i++) pthread_join(pool->threads[i], NULL);
  /* jobs a task still waits for stay with it (the state is closing) */
  pthread_cond_destroy(&pool->cv);
  pthread_mutex_destroy(&pool->mu);
  free(pool->threads);
  free(pool);
}
