/* pool: a fixed set of worker threads over a bounded queue of records. */
#include <pthread.h>
#include <stdlib.h>

#include <jv.h>

#include "lc.h"
#include "pool.h"

struct lc_pool {
	struct lc_pool_ops ops;
	pthread_mutex_t	 mu, out;
	pthread_cond_t	 more, room;
	pthread_t	*threads;
	int		 nthreads;
	jv		*q;		/* ring of cap items */
	int		 cap, head, len, closed;
	void		*inline_ctx;	/* jobs <= 1 */
};

static void
finish_item(struct lc_pool *p, jv item, void **ctx)
{
	jv r = p->ops.work(item, p->ops.arg, ctx);

	pthread_mutex_lock(&p->out);
	p->ops.done(r, p->ops.arg);
	pthread_mutex_unlock(&p->out);
}

static void *
worker(void *arg)
{
	struct lc_pool *p = arg;
	void *ctx = NULL;
	jv item;

	for (;;) {
		pthread_mutex_lock(&p->mu);
		while (p->len == 0 && !p->closed)
			pthread_cond_wait(&p->more, &p->mu);
		if (p->len == 0) {
			pthread_mutex_unlock(&p->mu);
			break;
		}
		item = p->q[p->head];
		p->head = (p->head + 1) % p->cap;
		p->len--;
		pthread_cond_signal(&p->room);
		pthread_mutex_unlock(&p->mu);
		finish_item(p, item, &ctx);
	}
	if (ctx != NULL && p->ops.ctx_free != NULL)
		p->ops.ctx_free(ctx);
	return NULL;
}

struct lc_pool *
lc_pool_start(int jobs, const struct lc_pool_ops *ops)
{
	struct lc_pool *p = calloc(1, sizeof(*p));
	pthread_attr_t attr;
	int i;

	if (p == NULL)
		lc_fatal("out of memory");
	p->ops = *ops;
	pthread_mutex_init(&p->mu, NULL);
	pthread_mutex_init(&p->out, NULL);
	pthread_cond_init(&p->more, NULL);
	pthread_cond_init(&p->room, NULL);
	if (jobs <= 1)
		return p;
	p->cap = jobs * 2;
	p->q = lc_xmalloc((size_t)p->cap * sizeof(*p->q));
	p->threads = lc_xmalloc((size_t)jobs * sizeof(*p->threads));
	/* The work is waiting on the network, so there can be hundreds of
	 * workers: small stacks keep them cheap. */
	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, 2 << 20);
	for (i = 0; i < jobs; i++) {
		if (pthread_create(&p->threads[i], &attr, worker, p) != 0)
			break;
		p->nthreads++;
	}
	pthread_attr_destroy(&attr);
	return p;
}

void
lc_pool_add(struct lc_pool *p, jv item)
{
	if (p->nthreads == 0) {
		finish_item(p, item, &p->inline_ctx);
		return;
	}
	pthread_mutex_lock(&p->mu);
	while (p->len == p->cap)
		pthread_cond_wait(&p->room, &p->mu);
	p->q[(p->head + p->len) % p->cap] = item;
	p->len++;
	pthread_cond_signal(&p->more);
	pthread_mutex_unlock(&p->mu);
}

void
lc_pool_finish(struct lc_pool *p)
{
	int i;

	pthread_mutex_lock(&p->mu);
	p->closed = 1;
	pthread_cond_broadcast(&p->more);
	pthread_mutex_unlock(&p->mu);
	for (i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	if (p->inline_ctx != NULL && p->ops.ctx_free != NULL)
		p->ops.ctx_free(p->inline_ctx);
	pthread_mutex_destroy(&p->mu);
	pthread_mutex_destroy(&p->out);
	pthread_cond_destroy(&p->more);
	pthread_cond_destroy(&p->room);
	free(p->q);
	free(p->threads);
	free(p);
}
