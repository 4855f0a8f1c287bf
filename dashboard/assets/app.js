// The dashboard's page: it replaces the sections that the event stream
// sends, and posts the operators' actions.
(function () {
	'use strict';

	var sections = ['breakers', 'bulkheads', 'limiters', 'budgets', 'outboxes', 'sagas', 'twophase', 'projections', 'events'];
	var live = document.getElementById('live');
	var status = document.getElementById('status');
	var token = document.querySelector('meta[name="resilience-token"]');

	// The sections come as HTML that the server's templates escaped.
	function connect() {
		var es = new EventSource('events');
		sections.forEach(function (id) {
			es.addEventListener(id, function (e) {
				var el = document.getElementById(id);
				if (el) {
					el.innerHTML = e.data;
				}
			});
		});
		es.addEventListener('tick', function (e) {
			live.textContent = new Date(e.data).toLocaleTimeString();
			live.className = 'live';
		});
		es.onerror = function () {
			live.className = 'stale';
			if (es.readyState === EventSource.CLOSED) { // refused: try again later
				setTimeout(connect, 5000);
			}
		};
	}

	function say(text, bad) {
		status.textContent = text;
		status.className = bad ? 'bad' : '';
	}

	document.addEventListener('click', function (ev) {
		var b = ev.target.closest('button[data-do]');
		if (!b || !token) {
			return;
		}
		var form = new URLSearchParams();
		form.set('do', b.dataset.do);
		form.set('name', b.dataset.name || '');
		form.set('id', b.dataset.id || '');
		if (b.dataset.confirm && !window.confirm(b.dataset.confirm)) {
			return;
		}
		if (b.dataset.note) {
			var note = window.prompt(b.dataset.note, '');
			if (note === null) {
				return;
			}
			form.set('note', note);
		}
		b.disabled = true;
		fetch('action', {
			method: 'POST',
			body: form,
			headers: {'X-Resilience-Token': token.content},
			credentials: 'same-origin'
		}).then(function (r) {
			if (r.ok) {
				say(b.textContent + ': done', false);
				return;
			}
			return r.text().then(function (t) { say(t, true); b.disabled = false; });
		}, function (err) {
			say(String(err), true);
			b.disabled = false;
		});
	});

	connect();
}());
