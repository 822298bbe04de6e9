/*
 * pool: run one function over a stream of records on up to N threads.
 * Items go in from the calling thread as they are read; each result is
 * handed to done() under one lock, so whole lines reach stdout in the
 * order they finish. Each worker keeps a context (an HTTP handle, a
 * ledger) in *ctx, made on its first item and freed with ctx_free.
 *
 * jv is safe here because each item is owned by exactly one thread: the
 * caller hands it over (consumed) and never keeps a copy.
 */
#ifndef LC_POOL_H
#define LC_POOL_H

#include <jv.h>

struct lc_pool_ops {
	/* Consumes item, returns the result (owned). */
	jv	(*work)(jv item, void *arg, void **ctx);
	/* Consumes result; called with the pool's output lock held. */
	void	(*done)(jv result, void *arg);
	void	(*ctx_free)(void *ctx);
	void	 *arg;
};

struct lc_pool;

/* jobs <= 1 (or no threads to be had): every item runs in lc_pool_add. */
struct lc_pool *lc_pool_start(int jobs, const struct lc_pool_ops *ops);
/* Hand an item over (consumed); waits while every worker is busy and the
 * queue is full. */
void	lc_pool_add(struct lc_pool *p, jv item);
/* Wait for every item to be done, then free the pool. */
void	lc_pool_finish(struct lc_pool *p);

#endif
