//! The list of connection profiles: name, address and a status dot each.

use yew::prelude::*;

#[derive(Clone, PartialEq)]
pub struct SidebarItem {
    pub id: u32,
    pub name: AttrValue,
    pub url: AttrValue,
    pub status_class: &'static str,
    pub status_label: &'static str,
}

#[derive(Properties, PartialEq)]
pub struct SidebarProps {
    pub items: Vec<SidebarItem>,
    pub selected: Option<u32>,
    pub onselect: Callback<u32>,
    pub onnew: Callback<()>,
}

#[function_component(Sidebar)]
pub fn sidebar(props: &SidebarProps) -> Html {
    let onnew = props.onnew.reform(|_: MouseEvent| ());
    html! {
        <aside class="sidebar" aria-label="Connections">
            <div class="sidebar-head">
                <h2>{ "Connections" }</h2>
                <button class="ghost small" onclick={onnew} title="New connection" aria-label="New connection">
                    <span aria-hidden="true">{ "+" }</span>{ " New" }
                </button>
            </div>
            <ul class="profiles">
                { for props.items.iter().map(|item| {
                    let id = item.id;
                    let selected = props.selected == Some(id);
                    let onclick = props.onselect.reform(move |_: MouseEvent| id);
                    html! {
                        <li key={id}>
                            <button class={classes!("profile", selected.then_some("active"))}
                                aria-current={selected.then_some("true")} {onclick}
                                title={format!("{} · {}", item.name, item.status_label)}>
                                <span class={classes!("dot", item.status_class)}
                                    aria-label={item.status_label} role="img"></span>
                                <span class="profile-text">
                                    <span class="profile-name">{ &item.name }</span>
                                    <span class="profile-url">{ &item.url }</span>
                                </span>
                            </button>
                        </li>
                    }
                }) }
            </ul>
        </aside>
    }
}
