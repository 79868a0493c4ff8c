// The console's shell: a list of views, one shown at a time, chosen by the URL's hash
// (#/topics). A view is {id, title, mount(container, live)} and mount returns {unmount()}.
// Later views (plant, OEE, work orders, trace) are one import and one entry in VIEWS.

import { Live } from './api.js';
import { topicsView } from './topics.js';
import { ordersView } from './orders.js';

const VIEWS = [topicsView, ordersView];

const live = new Live(document.getElementById('live'));
let current = null;

function show() {
  const wanted = location.hash.replace(/^#\//, '') || VIEWS[0].id;
  const view = VIEWS.find((v) => v.id === wanted) || VIEWS[0];
  for (const link of document.querySelectorAll('#views a')) {
    link.classList.toggle('active', link.dataset.view === view.id);
  }
  if (current) current.unmount();
  const container = document.getElementById('view');
  container.replaceChildren();
  current = view.mount(container, live);
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
