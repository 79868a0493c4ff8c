// The console's shell: a list of views, one shown at a time, chosen by the URL's hash
// (#/topics, #/trace?lot=X). A view is {id, title, mount(container, live, params)} and mount
// returns {unmount()}; params are the hash's query (URLSearchParams).

import { Live } from './api.js';
import { topicsView } from './topics.js';
import { plantView } from './plant.js';
import { oeeView } from './oee.js';
import { ordersView } from './orders.js';
import { traceView } from './trace.js';

const VIEWS = [topicsView, plantView, oeeView, ordersView, traceView];

const live = new Live(document.getElementById('live'));
let current = null;
let shownHash = null;

function show() {
  if (location.hash === shownHash) return;
  shownHash = location.hash;
  const [wanted, query] = location.hash.replace(/^#\/?/, '').split('?');
  const view = VIEWS.find((v) => v.id === wanted) || VIEWS[0];
  for (const link of document.querySelectorAll('#views a')) {
    link.classList.toggle('active', link.dataset.view === view.id);
  }
  if (current) current.unmount();
  const container = document.getElementById('view');
  container.replaceChildren();
  current = view.mount(container, live, new URLSearchParams(query || ''));
}

const nav = document.getElementById('views');
for (const view of VIEWS) {
  const link = document.createElement('a');
  link.href = `#/${view.id}`;
  link.textContent = view.title;
  link.dataset.view = view.id;
  nav.append(link);
}
window.addEventListener('hashchange', show);
show();
